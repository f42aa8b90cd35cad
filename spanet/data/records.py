"""The record types every reader yields: one good wafer/image, or one rejected input with a reason.

Readers never raise for a single bad record; they yield a `RejectedRecord` so that ingestion can
quarantine it and go on. Only an input that is unusable as a whole raises `DataInputError`.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

import numpy as np


class DataInputError(ValueError):
    """The whole input is unusable (path missing, wrong format, nothing readable)."""


def split_key(lot_id: str, ref: str) -> str:
    """The key that decides a record's split: its lot, or its own reference when the lot is unknown."""
    return f"lot:{lot_id}" if lot_id else f"ref:{ref}"


class RejectKind:
    """Why a record was not turned into an example."""

    #: The record is broken (corrupt image, unknown die value, empty map): quarantined with its reason.
    INVALID = "invalid"
    #: The record has no label (e.g. WM-811K's unlabelled rows): skipped and counted.
    UNLABELLED = "unlabelled"
    #: The record is valid but excluded by a reader option (e.g. mixed types in single-label mode).
    EXCLUDED = "excluded"

    ALL = (INVALID, UNLABELLED, EXCLUDED)


@dataclass(frozen=True, eq=False)
class WaferRecord:
    """One wafer map or defect image, with its label and the metadata needed for slicing and splits.

    `image` is uint8, HxW (grey) or HxWx3 (RGB). Wafer maps are already in the grey-level
    convention of `spanet.data.classes` (off-wafer 0, pass 128, fail 255, one pixel per die).
    `ref` says where the record came from (file, or file#index) for reports and as a fallback
    split key when the lot is unknown.
    """

    image: np.ndarray
    label: str
    lot_id: str = ""
    wafer_id: str = ""
    stage: Optional[str] = None
    source: str = ""
    ref: str = ""
    original_shape: Tuple[int, int] = field(default=(0, 0))
    #: The input's own train/test split where it has one (WM-811K's ``trianTestLabel``), else None.
    source_split: Optional[str] = None

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise TypeError(f"{self.ref or 'record'}: image must be a uint8 numpy array")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"{self.ref or 'record'}: image must be HxW or HxWx3, got shape {image.shape}")
        if self.original_shape == (0, 0):
            object.__setattr__(self, "original_shape", (int(image.shape[0]), int(image.shape[1])))

    @property
    def split_key(self) -> str:
        """The key that decides the split: the lot, or the record's own reference when the lot is unknown."""
        return split_key(self.lot_id, self.ref)


@dataclass(frozen=True)
class RejectedRecord:
    """An input record that was not turned into an example: where it is and why."""

    ref: str
    reason: str
    kind: str = RejectKind.INVALID
    #: The label when it is known (counted per class in reports), else "".
    label: str = ""


ReadResult = Union[WaferRecord, RejectedRecord]
