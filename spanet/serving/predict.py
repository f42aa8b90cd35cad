"""The ``spanet predict`` work: paths (files, folders, globs) -> encoded inputs (one per image or wafer
map) -> a table, CSV or JSON lines; an unreadable file is set aside with its reason, not fatal.

Images (.png / .jpg / .jpeg) are sent as they are, after a local decode check so that an unreadable
file is named here rather than answered by the server. Wafer-map files go through the project's
loaders and the grey-level convention: a MixedWM38 ``.npz``, a SEMI G85 file (.g85 / .xml / .map)
or a WM-811K pickle (.pkl / .pickle); such a file can hold many maps, one table row each
(``file#index``). Labels in those files are not needed and not used.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

from spanet.serving.client import Prediction

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
NPZ_EXTENSIONS = (".npz",)
G85_EXTENSIONS = (".g85", ".xml", ".map")
WM811K_EXTENSIONS = (".pkl", ".pickle")
TABLE_COLUMNS = ("file", "class", "confidence", "defective")


class InputFileError(ValueError):
    """A file given to ``spanet predict`` cannot be read; the message names it and says why."""


@dataclass(frozen=True)
class PredictInput:
    """One row to predict: where it came from, and the encoded image to send."""

    ref: str
    image: bytes


def _die_maps_to_inputs(path: str, die_maps: Iterable) -> List[PredictInput]:
    from spanet.data.convention import die_map_to_image
    from spanet.data.imageio import encode_png

    inputs = []
    for i, die_map in enumerate(die_maps):
        try:
            inputs.append(PredictInput(f"{path}#{i}", encode_png(die_map_to_image(die_map))))
        except ValueError as exc:
            raise InputFileError(f"{path}: wafer map {i}: {exc}") from None
    if not inputs:
        raise InputFileError(f"{path}: holds no wafer map")
    return inputs


def _read_image(path: str) -> List[PredictInput]:
    from spanet.data.imageio import decode_image

    with open(path, "rb") as fh:
        data = fh.read()
    try:
        decode_image(data)
    except ValueError as exc:
        raise InputFileError(f"{path}: not a readable PNG/JPEG image ({exc})") from None
    return [PredictInput(path, data)]


def _read_npz(path: str) -> List[PredictInput]:
    from spanet.data.formats.mixedwm38 import MAPS_KEY, load_npz

    return _die_maps_to_inputs(path, load_npz(path)[MAPS_KEY])


def _read_g85(path: str) -> List[PredictInput]:
    from spanet.data.formats.g85 import parse_g85

    with open(path, "r", encoding="utf-8", errors="strict") as fh:
        maps = parse_g85(fh.read())
    return _die_maps_to_inputs(path, (m.die_map for m in maps))


def _read_wm811k(path: str) -> List[PredictInput]:
    import numpy as np

    from spanet.data.formats.wm811k import load_wm811k

    frame = load_wm811k(path)
    if "waferMap" not in frame.columns:
        raise InputFileError(f"{path}: no 'waferMap' column (found {list(frame.columns)[:10]})")
    return _die_maps_to_inputs(path, (np.asarray(m) for m in frame["waferMap"]))


_READERS = (
    (IMAGE_EXTENSIONS, _read_image),
    (NPZ_EXTENSIONS, _read_npz),
    (G85_EXTENSIONS, _read_g85),
    (WM811K_EXTENSIONS, _read_wm811k),
)


def read_inputs(path: str) -> List[PredictInput]:
    """The inputs of one file (one per image or wafer map); InputFileError naming the file otherwise."""
    if not os.path.isfile(path):
        raise InputFileError(f"{path}: no such file")
    lower = path.lower()
    for extensions, reader in _READERS:
        if lower.endswith(extensions):
            try:
                return reader(path)
            except InputFileError:
                raise
            except Exception as exc:  # corrupt archives, bad pickles, G85 syntax, permissions...
                raise InputFileError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from None
    known = ", ".join(e for exts, _ in _READERS for e in exts)
    raise InputFileError(f"{path}: unsupported file type (expected one of {known})")


def _known_file(path: str) -> bool:
    return path.lower().endswith(tuple(e for exts, _ in _READERS for e in exts))


def expand_paths(paths: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Files for ``paths``: a folder gives its known files (recursively, sorted), a glob pattern (quoted
    on the shell) its matches, anything else itself. Returns (files, one problem line per path that
    gives nothing)."""
    files, problems = [], []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(root, name) for root, _, names in os.walk(path) for name in names if _known_file(name)
            )
            if not found:
                problems.append(f"{path}: a folder with no image or wafer-map file")
            files.extend(found)
        elif not os.path.exists(path) and glob.has_magic(path):
            found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append(f"{path}: matches no file")
            files.extend(found)
        else:
            files.append(path)
    return files, problems


def read_many(paths: Sequence[str]) -> Tuple[List[PredictInput], List[str]]:
    """The inputs of every readable file of ``paths`` (folders and globs expanded), and one line per
    path or file that could not be read, naming it and why: one bad file does not stop the rest."""
    files, problems = expand_paths(paths)
    inputs = []
    for path in files:
        try:
            inputs.extend(read_inputs(path))
        except InputFileError as exc:
            problems.append(str(exc))
    return inputs, problems


def _row(ref: str, p: Prediction) -> dict:
    """One prediction as plain data: the columns of every output format."""
    row = {
        "file": ref,
        "class": p.class_name,
        "confidence": p.confidence,
        "defective": p.defective,
        "defect_score": p.defect_score,
        "unknown": p.unknown,
        "model_version": p.model_version,
        "probabilities": dict(p.probabilities),
    }
    if p.patterns is not None:
        row["patterns"] = list(p.patterns)
    return row


CSV_COLUMNS = ("file", "class", "confidence", "defective", "defect_score", "unknown", "model_version")


def csv_header(classes: Sequence[str]) -> List[str]:
    """The CSV columns: file, class, confidence, defective, defect_score, unknown, model_version, then one
    ``p_<class>`` column per class (the model's order)."""
    return list(CSV_COLUMNS) + [f"p_{name}" for name in classes]


def csv_cells(ref: str, p: Prediction, classes: Sequence[str]) -> List[str]:
    """One prediction's CSV cells, in :func:`csv_header`'s order."""
    return [
        ref,
        p.class_name,
        "" if p.confidence is None else f"{p.confidence:.6f}",
        str(int(p.defective)),
        f"{p.defect_score:.6f}",
        str(int(p.unknown)),
        str(p.model_version),
    ] + [f"{p.probabilities.get(name, float('nan')):.6f}" for name in classes]


def csv_line(cells: Sequence[str]) -> str:
    """One CSV line (quoted as needed, no line end)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()


def jsonl_line(ref: str, p: Prediction) -> str:
    """One prediction as one strict JSON object (see :func:`_row`; an unknown input's confidence is null)."""
    return json.dumps(_row(ref, p), allow_nan=False)


def format_csv(rows: Sequence[Tuple[str, Prediction]]) -> str:
    """CSV with a header (:func:`csv_header`), one line per prediction."""
    classes = list(rows[0][1].probabilities) if rows else []
    return "\n".join(
        csv_line(cells) for cells in [csv_header(classes)] + [csv_cells(ref, p, classes) for ref, p in rows]
    )


def format_jsonl(rows: Sequence[Tuple[str, Prediction]]) -> str:
    """One strict JSON object per line (:func:`jsonl_line`)."""
    return "\n".join(jsonl_line(ref, p) for ref, p in rows)


def format_table(rows: Sequence[Tuple[str, Prediction]]) -> str:
    """A plain-text table: file, class (``unknown`` for inputs unlike every class), confidence (probability
    of that class), defective (with score)."""
    body = [
        (
            ref,
            p.class_name,
            "-" if p.confidence is None else f"{p.confidence:.4f}",
            f"{'yes' if p.defective else 'no'} ({p.defect_score:.2f})"
            + (", unlike every class: sent to review" if p.unknown else ""),
        )
        for ref, p in rows
    ]
    widths = [max(len(str(r[i])) for r in [TABLE_COLUMNS, *body]) for i in range(len(TABLE_COLUMNS))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(TABLE_COLUMNS), line(["-" * w for w in widths]), *(line(r) for r in body)])


#: ``spanet predict --output`` choices.
FORMATTERS = {"table": format_table, "csv": format_csv, "jsonl": format_jsonl}


def _with_explanation(rows: Sequence[Tuple[str, Prediction, str]], formatter: str) -> str:
    """A ``FORMATTERS`` listing with one more column, ``explanation``: each row's overlay path."""
    text = FORMATTERS[formatter]([(ref, p) for ref, p, _ in rows])
    paths = [path for _, _, path in rows]
    lines = text.split("\n")
    if formatter == "jsonl":
        return "\n".join(
            json.dumps({**json.loads(line), "explanation": path}, allow_nan=False) for line, path in zip(lines, paths)
        )
    if formatter == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row, path in zip(csv.reader(lines), ["explanation"] + paths):
            writer.writerow(row + [path])
        return buffer.getvalue().rstrip("\n")
    width = max(len(line) for line in lines)
    header, rule, body = lines[0], lines[1], lines[2:]
    return "\n".join(
        [header.ljust(width) + "  explanation", rule.ljust(width) + "  " + "-" * 11]
        + [line.ljust(width) + "  " + path for line, path in zip(body, paths)]
    )


#: ``spanet explain --output`` choices: the predict listings plus the overlay's path.
EXPLAINED_FORMATTERS = {name: (lambda rows, name=name: _with_explanation(rows, name)) for name in FORMATTERS}
