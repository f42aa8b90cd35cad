"""MixedWM38-style ``npz`` (format ``npz``): ``arr_0`` (N, H, W) die maps 0/1/2, ``arr_1`` (N, 8) multi-hot
labels in MIXEDWM38_BIT_ORDER. Optional extra arrays ``lot_id``, ``wafer_id``, ``stage`` (unicode)
carry metadata when we write the file; the public file has none (each map is then its own split unit).
"""

import functools
import os
import zipfile
from dataclasses import dataclass
from typing import ClassVar, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from spanet.data.classes import MIXEDWM38_BIT_ORDER, label_parts, mixed_label
from spanet.data.convention import check_die_map, die_map_to_image, image_to_die_map
from spanet.data.formats.base import Reader, ReadPlan, Shard, single_file
from spanet.data.formats.outputs import atomic_file
from spanet.data.progress import progress
from spanet.data.records import DataInputError, ReadResult, RejectedRecord, RejectKind, WaferRecord, split_key

MAPS_KEY, LABELS_KEY = "arr_0", "arr_1"
META_KEYS = ("lot_id", "wafer_id", "stage")


@functools.lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int) -> Dict[str, np.ndarray]:
    """Load every array of the npz once per process (decompressing a member is the expensive part)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataInputError(f"{path}: not a readable npz file ({exc}); object arrays (pickles) are refused") from exc


def load_npz(path: str) -> Dict[str, np.ndarray]:
    """The arrays of a MixedWM38-style npz, checked: DataInputError names the missing or mis-shaped array."""
    data = _load(path, os.stat(path).st_mtime_ns)
    for key in (MAPS_KEY, LABELS_KEY):
        if key not in data:
            raise DataInputError(f"{path}: missing array {key!r} (found {sorted(data)})")
    maps, labels = data[MAPS_KEY], data[LABELS_KEY]
    if maps.ndim != 3:
        raise DataInputError(f"{path}: {MAPS_KEY} must be (N, H, W) wafer maps, got shape {maps.shape}")
    if labels.shape != (maps.shape[0], len(MIXEDWM38_BIT_ORDER)):
        raise DataInputError(f"{path}: {LABELS_KEY} must be ({maps.shape[0]}, 8) multi-hot labels, got {labels.shape}")
    for key in META_KEYS:
        if key in data and data[key].shape != (maps.shape[0],):
            raise DataInputError(f"{path}: {key} must hold one entry per map, got shape {data[key].shape}")
    return data


@dataclass(frozen=True)
class MixedWM38Reader(Reader):
    """Reads a MixedWM38 npz. `mixed=False` keeps pure types only (mixed maps are skipped and counted)."""

    mixed: bool = True
    maps_per_shard: int = 4096
    name: ClassVar[str] = "npz"

    def plan(self, path: str) -> ReadPlan:
        path = single_file(path, (".npz",), "npz file")
        count = load_npz(path)[MAPS_KEY].shape[0]
        if count == 0:
            raise DataInputError(f"{path}: holds no wafer map")
        step = self.maps_per_shard
        return ReadPlan(tuple(Shard(path, start=i, stop=min(i + step, count)) for i in range(0, count, step)))

    def planned_labels(self, plan: ReadPlan) -> Optional[List[Tuple[str, str]]]:
        """(label, split key) per map, from the label array alone; mixed maps are ``+`` names (left out, as
        the read leaves them out, in single-label mode); invalid label rows are not listed."""
        out = []
        for shard in plan.shards:
            data = load_npz(shard.path)
            labels, lots = data[LABELS_KEY], data.get("lot_id")
            base = os.path.basename(shard.path)
            for i in range(shard.start, shard.stop, shard.step):
                bits = labels[i]
                if not np.isin(bits, (0, 1)).all():
                    continue
                label = mixed_label([c for c, b in zip(MIXEDWM38_BIT_ORDER, bits) if b])
                if self.mixed or len(label_parts(label)) == 1:
                    out.append((label, split_key(str(lots[i]) if lots is not None else "", f"{base}#{i}")))
        return out

    def read_shard(self, shard: Shard) -> Iterator[ReadResult]:
        data = load_npz(shard.path)
        maps, labels = data[MAPS_KEY], data[LABELS_KEY]
        meta = {k: data.get(k) for k in META_KEYS}
        base = os.path.basename(shard.path)
        for i in range(shard.start, shard.stop, shard.step):
            ref = f"{base}#{i}"
            bits = labels[i]
            if not np.isin(bits, (0, 1)).all():
                yield RejectedRecord(ref, f"label {bits.tolist()} is not an 8-bit 0/1 multi-hot vector")
                continue
            label = mixed_label([c for c, b in zip(MIXEDWM38_BIT_ORDER, bits) if b])
            reason = check_die_map(maps[i])
            if reason:
                yield RejectedRecord(ref, reason, label=label)
                continue
            if not self.mixed and len(label_parts(label)) > 1:
                yield RejectedRecord(
                    ref, f"mixed-type map ({label}) left out in single-label mode", RejectKind.EXCLUDED, label
                )
                continue
            stage = str(meta["stage"][i]) if meta["stage"] is not None else ""
            yield WaferRecord(
                image=die_map_to_image(maps[i]),
                label=label,
                lot_id=str(meta["lot_id"][i]) if meta["lot_id"] is not None else "",
                wafer_id=str(meta["wafer_id"][i]) if meta["wafer_id"] is not None else str(i),
                stage=stage or None,
                source=self.name,
                ref=ref,
            )


def _multi_hot(label: str) -> List[int]:
    parts = set(label_parts(label)) - {"none"}
    unknown = parts - set(MIXEDWM38_BIT_ORDER)
    if unknown:
        raise ValueError(f"label {label!r} has part(s) {sorted(unknown)} that MixedWM38 cannot encode")
    return [int(c in parts) for c in MIXEDWM38_BIT_ORDER]


def _write_member(zf: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # fixed time: same seed, same bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)


def write_mixedwm38(
    records: Iterable[WaferRecord], path: str, total: Optional[int] = None, show_progress: bool = False
) -> int:
    """Write wafer-map records of one grid size as a MixedWM38-style npz (with lot/wafer/stage arrays).

    Raises ValueError naming the first record whose shape or label cannot be stored.
    """
    maps, labels, lots, wafers, stages = [], [], [], [], []
    for rec in progress(records, total=total, desc="npz", enabled=show_progress):
        if maps and rec.image.shape != maps[0].shape:
            raise ValueError(
                f"{rec.ref}: map shape {rec.image.shape} differs from {maps[0].shape}; npz needs one grid size"
            )
        maps.append(image_to_die_map(rec.image))
        labels.append(_multi_hot(rec.label))
        lots.append(rec.lot_id)
        wafers.append(rec.wafer_id)
        stages.append(rec.stage or "")
    if not maps:
        raise ValueError("no records to write")
    arrays = {
        MAPS_KEY: np.stack(maps),
        LABELS_KEY: np.asarray(labels, dtype=np.uint8),
        "lot_id": np.asarray(lots, dtype=str),
        "wafer_id": np.asarray(wafers, dtype=str),
        "stage": np.asarray(stages, dtype=str),
    }
    with atomic_file(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for key, array in arrays.items():
                _write_member(zf, key, array)
    return len(maps)
