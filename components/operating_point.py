"""The defect flag's operating threshold: a wafer is defective when P(normal) < t.

The Trainer picks t on the eval split as the smallest threshold that reaches the
target defect recall, never below 0.5 (the flag is at least as sensitive as "normal
is less likely than not"), never above a ceiling, and never so high that more than a
false-alarm budget of the normal eval wafers is flagged: a model that cannot reach the
recall within the budget keeps the recall it can have there (the Evaluator then judges
both on the unseen test split) instead of buying recall by flagging good wafers.
``defect_score`` re-expresses the flag as a number that crosses 0.5
exactly at t, so TFMA's stock Recall (cut at 0.5) measures defect recall.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict

import numpy as np

#: The defect flag is never less sensitive than "P(normal) < 0.5".
MIN_THRESHOLD = 0.5


@dataclass(frozen=True)
class OperatingPoint:
    """A chosen threshold and what it achieves on the split it was chosen on."""

    threshold: float
    defect_recall: float
    false_alarm_rate: float
    target_reached: bool
    defects: int
    normals: int
    #: What set the threshold: "target recall", "false-alarm budget", "ceiling" or "floor".
    limited_by: str = "target recall"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def defect_flags(p_normal: np.ndarray, threshold: float) -> np.ndarray:
    """True where the wafer is flagged defective: P(normal) < threshold."""
    return np.asarray(p_normal) < threshold


def defect_score(p_normal, threshold, clip: Callable = np.clip):
    """``clip(1 - p / (2 t), 0, 1)``: decreasing in P(normal), above 0.5 exactly when p < t.

    One definition for NumPy arrays and, with ``clip=tf.clip_by_value``, for the exported graph.
    """
    return clip(1.0 - p_normal / (2.0 * threshold), 0.0, 1.0)


def rates(p_normal: np.ndarray, is_defect: np.ndarray, threshold: float) -> Dict[str, float]:
    """Defect recall (flagged defects / defects) and false-alarm rate (flagged normals / normals)."""
    flags = defect_flags(p_normal, threshold)
    is_defect = np.asarray(is_defect, dtype=bool)
    recall = float(flags[is_defect].mean()) if is_defect.any() else float("nan")
    false_alarms = float(flags[~is_defect].mean()) if (~is_defect).any() else float("nan")
    return {"defect_recall": recall, "false_alarm_rate": false_alarms}


def choose_threshold(
    p_normal: np.ndarray,
    is_defect: np.ndarray,
    target_recall: float,
    max_threshold: float,
    max_false_alarm_rate: float = 1.0,
) -> OperatingPoint:
    """The smallest t in [0.5, max_threshold] whose defect recall on these wafers reaches the target,
    lowered where needed so that at most ``max_false_alarm_rate`` of the normal wafers are flagged."""
    p_normal = np.asarray(p_normal, dtype=np.float64)
    is_defect = np.asarray(is_defect, dtype=bool)
    if p_normal.shape != is_defect.shape or p_normal.ndim != 1:
        raise ValueError(
            f"p_normal and is_defect must be 1-D of one length; got {p_normal.shape} and {is_defect.shape}"
        )
    ceiling = max(MIN_THRESHOLD, float(max_threshold))
    defects = np.sort(p_normal[is_defect])
    limited_by = "target recall"
    if len(defects) == 0:
        threshold = MIN_THRESHOLD
    else:
        needed = max(1, math.ceil(target_recall * len(defects) - 1e-9))
        # Flag the `needed` defects with the lowest P(normal): t just above the largest of them.
        threshold = float(np.nextafter(defects[needed - 1], np.inf))
        if threshold > ceiling:
            threshold, limited_by = ceiling, "ceiling"
    normals = np.sort(p_normal[~is_defect])
    allowed = math.floor(max_false_alarm_rate * len(normals) + 1e-9)
    if allowed < len(normals) and threshold > normals[allowed]:
        # t at the (allowed + 1)-th lowest normal P(normal) flags exactly `allowed` normal wafers (ties: fewer).
        threshold, limited_by = float(normals[allowed]), "false-alarm budget"
    if threshold < MIN_THRESHOLD:
        threshold, limited_by = MIN_THRESHOLD, "floor"
    achieved = rates(p_normal, is_defect, threshold)
    recall = achieved["defect_recall"]
    return OperatingPoint(
        threshold=threshold,
        defect_recall=recall,
        false_alarm_rate=achieved["false_alarm_rate"],
        target_reached=bool(len(defects) == 0 or recall >= target_recall),
        defects=int(is_defect.sum()),
        normals=int((~is_defect).sum()),
        limited_by=limited_by,
    )
