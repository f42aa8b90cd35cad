"""WM-811K's ``LSWMD.pkl`` (format ``wm811k``): a pandas DataFrame pickled under Python 2 / pandas 0.x,
loaded with the restricted unpickler. Labels are nested arrays (``[['Center']]``); empty means
unlabelled (skipped and counted). ``trianTestLabel`` (sic) is the file's own train / test split.
"""

import functools
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Optional, Tuple

import numpy as np

from spanet.data.classes import WAFER_CLASSES
from spanet.data.convention import check_die_map, die_map_to_image
from spanet.data.formats.base import Reader, ReadPlan, Shard, require_path, single_file
from spanet.data.records import DataInputError, ReadResult, RejectedRecord, RejectKind, WaferRecord
from spanet.data.safe_pickle import restricted_load

REQUIRED_COLUMNS = ("waferMap", "failureType")
#: The file's split names and ours.
SOURCE_SPLITS = {"training": "train", "test": "test"}


def unnest(value: Any) -> str:
    """The string inside WM-811K's nested label arrays (``[['Center']]`` -> ``Center``); "" if empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if np.isnan(value) else str(value)
    if not isinstance(value, (str, bytes)):
        flat = np.asarray(value, dtype=object).ravel()
        if flat.size == 0:
            return ""
        value = flat[0]
    if isinstance(value, bytes):
        value = value.decode("latin1")
    return str(value).strip()


@functools.lru_cache(maxsize=1)
def _load_frame(path: str, mtime_ns: int):
    with open(path, "rb") as fh:
        frame = restricted_load(fh, source=path)
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataInputError(f"{path}: expected a pickled pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataInputError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def load_wm811k(path: str):
    """The WM-811K DataFrame, loaded safely (cached per process)."""
    path = require_path(path, "WM-811K pickle")
    return _load_frame(path, os.stat(path).st_mtime_ns)


@dataclass(frozen=True)
class WM811KReader(Reader):
    """Reads ``LSWMD.pkl``. `subset` ``train`` / ``test`` keeps only that part of the file's own split."""

    subset: Optional[str] = None
    name: ClassVar[str] = "wm811k"
    vocabulary: ClassVar[Optional[Tuple[str, ...]]] = WAFER_CLASSES

    def __post_init__(self) -> None:
        if self.subset not in (None, "train", "test"):
            raise ValueError(f"subset must be None, 'train' or 'test', got {self.subset!r}")

    def plan(self, path: str) -> ReadPlan:
        path = single_file(path, (".pkl", ".pickle"), "WM-811K pickle")
        return ReadPlan((Shard(path),))

    def read_shard(self, shard: Shard) -> Iterator[ReadResult]:
        frame = load_wm811k(shard.path)
        base = os.path.basename(shard.path)
        n = len(frame)
        col = lambda name: frame[name].to_numpy() if name in frame.columns else np.full(n, None, dtype=object)  # noqa: E731
        maps, labels, lots, wafers, splits = (
            col("waferMap"),
            col("failureType"),
            col("lotName"),
            col("waferIndex"),
            col("trianTestLabel"),
        )
        for i in range(n):
            ref = f"{base}#{frame.index[i]}"
            split = SOURCE_SPLITS.get(unnest(splits[i]).lower())
            if self.subset and split != self.subset:
                yield RejectedRecord(ref, f"not in the file's {self.subset!r} split", RejectKind.EXCLUDED)
                continue
            label = unnest(labels[i])
            if not label:
                yield RejectedRecord(ref, "unlabelled (empty failureType)", RejectKind.UNLABELLED)
                continue
            if label not in WAFER_CLASSES:
                yield RejectedRecord(ref, f"unknown failureType {label!r}", label=label)
                continue
            reason = (
                check_die_map(maps[i])
                if isinstance(maps[i], np.ndarray)
                else f"waferMap is a {type(maps[i]).__name__}, not an array"
            )
            if reason:
                yield RejectedRecord(ref, reason, label=label)
                continue
            wafer = wafers[i]
            wafer_id = (
                ""
                if wafer is None or (isinstance(wafer, float) and np.isnan(wafer))
                else str(int(wafer))
                if isinstance(wafer, (int, float, np.number))
                else str(wafer)
            )
            yield WaferRecord(
                image=die_map_to_image(maps[i]),
                label=label,
                lot_id=unnest(lots[i]),
                wafer_id=wafer_id,
                stage=None,
                source=self.name,
                ref=ref,
                source_split=split,
            )
