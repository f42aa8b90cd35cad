"""Labelled file folders: one sub-folder per class, optionally a manifest CSV (path,label,lot,wafer,stage).

Shared by the image-folder and G85 readers, and by the writers that produce such folders.
"""

import csv
import os
import re
from typing import Iterable, List, Optional, Sequence, Tuple

from spanet.data.classes import MIXED_LABEL_SEPARATOR
from spanet.data.formats.base import FileEntry, ReadPlan, Shard
from spanet.data.records import DataInputError, RejectedRecord, RejectKind

#: The manifest's file name when it is found automatically, and its columns.
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: Tuple[str, ...] = ("path", "label", "lot", "wafer", "stage")
_REQUIRED_COLUMNS = ("path", "label")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of `text` (class names such as ``Edge-Loc`` or ``Center+Loc`` stay as they are)."""
    return _UNSAFE.sub("_", text).strip("._") or "_"


def _manifest_entries(
    root: str, manifest: str, extensions: Sequence[str]
) -> Tuple[List[FileEntry], List[RejectedRecord]]:
    entries, rejected = [], []
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataInputError(f"manifest {manifest}: missing column(s) {missing}; expected {list(MANIFEST_COLUMNS)}")
        reader.fieldnames = columns
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            ref = f"{os.path.basename(manifest)}:{line}" if not rel else rel
            full = rel if os.path.isabs(rel) else os.path.join(root, rel)
            label = (row.get("label") or "").strip()
            if not rel:
                rejected.append(RejectedRecord(ref, "manifest row has an empty path"))
            elif not os.path.isfile(full):
                rejected.append(
                    RejectedRecord(
                        ref, f"listed in {os.path.basename(manifest)} but the file does not exist", label=label
                    )
                )
            elif extensions and not rel.lower().endswith(tuple(extensions)):
                rejected.append(
                    RejectedRecord(ref, f"unsupported file type (expected {', '.join(extensions)})", label=label)
                )
            elif not label:
                rejected.append(RejectedRecord(ref, "manifest row has no label", RejectKind.UNLABELLED))
            else:
                stage = (row.get("stage") or "").strip() or None
                entries.append(
                    FileEntry(full, rel, label, (row.get("lot") or "").strip(), (row.get("wafer") or "").strip(), stage)
                )
    return entries, rejected


def _walk_entries(root: str, extensions: Sequence[str]) -> Tuple[List[FileEntry], List[RejectedRecord]]:
    entries, rejected = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.lower().endswith(tuple(extensions)):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            parts = rel.split("/")
            if len(parts) < 2:
                rejected.append(
                    RejectedRecord(
                        rel, "file is not in a class sub-folder and no manifest labels it", RejectKind.UNLABELLED
                    )
                )
            else:
                entries.append(FileEntry(full, rel, parts[0]))
    return entries, rejected


def plan_folder(
    root: str, extensions: Sequence[str], manifest: Optional[str] = None, files_per_shard: int = 256, mixed: bool = True
) -> ReadPlan:
    """Plan the reading of a class-per-folder tree or a manifest; DataInputError if it holds no such file.

    `manifest` is a CSV path (absolute or relative to `root`); None uses ``root/manifest.csv`` if present.
    `mixed=False` leaves out files with a mixed-type label (``Center+Loc``), counted as excluded.
    """
    if not os.path.isdir(root):
        raise DataInputError(f"{root!r} is not a folder")
    if manifest is None and os.path.isfile(os.path.join(root, MANIFEST_NAME)):
        manifest = MANIFEST_NAME
    if manifest:
        manifest_path = manifest if os.path.isabs(manifest) else os.path.join(root, manifest)
        if not os.path.isfile(manifest_path):
            raise DataInputError(f"manifest {manifest_path!r} does not exist")
        entries, rejected = _manifest_entries(root, manifest_path, extensions)
    else:
        entries, rejected = _walk_entries(root, extensions)
    if not entries and not rejected:
        raise DataInputError(f"{root!r} holds no {'/'.join(e.lstrip('.') for e in extensions)} file")
    if not mixed:
        kept = [e for e in entries if MIXED_LABEL_SEPARATOR not in e.label]
        rejected += [
            RejectedRecord(
                e.ref, f"mixed-type label ({e.label}) left out in single-label mode", RejectKind.EXCLUDED, e.label
            )
            for e in entries
            if MIXED_LABEL_SEPARATOR in e.label
        ]
        entries = kept
    shards = tuple(
        Shard(path=root, entries=tuple(entries[i : i + files_per_shard]))
        for i in range(0, len(entries), files_per_shard)
    )
    return ReadPlan(shards=shards, rejected=tuple(rejected))


def write_manifest(root: str, rows: Iterable[Sequence[str]]) -> str:
    """Write ``root/manifest.csv`` with MANIFEST_COLUMNS; returns its path."""
    path = os.path.join(root, MANIFEST_NAME)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return path
