"""The plain data a run report shows (no TFX, no TensorFlow): what ``render`` draws and writes.

``collect`` fills these from a run's artifacts; experiments and tests can build them by hand.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

#: Files inside a report folder (besides ``images/``): the page, and its numbers as JSON.
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


@dataclass
class GalleryItem:
    """One misclassified test wafer: its image, true and predicted class, and how sure the model was."""

    image: np.ndarray  # uint8, HxW (grey) or HxWx3
    true_class: str
    predicted_class: str
    confidence: float  # probability of the predicted class
    defect_score: float  # > 0.5: flagged as defective at the operating threshold
    ref: str = ""  # lot / wafer id, for finding the wafer
    #: "missed defect" (defective, not flagged), "false alarm" (normal, flagged) or "" (wrong pattern only).
    kind: str = ""
    #: The encoded image (PNG / JPEG) as the model was given it.
    encoded: bytes = b""
    #: The explanation map on the wafer's own grid (HxW in [0, 1]), when the model exports one.
    explanation: Optional[np.ndarray] = None


@dataclass
class GatePolicy:
    """The Evaluator's blessing thresholds, as the report states them."""

    min_defect_recall: float = 0.99
    max_false_alarm_rate: float = 0.10


@dataclass
class ReportData:
    """Everything one run's report shows.

    ``evaluation`` is :func:`components.eval_summary.summarize_evaluation`'s dict: the report's
    numbers come from it unchanged, so they equal the Evaluator's.
    """

    class_names: List[str]
    normal_class: str
    evaluation: Dict[str, Any]
    gate: GatePolicy
    blessed: Optional[bool]
    #: The Trainer's operating point: threshold on P(normal), eval defect recall / false alarms, ...
    operating_point: Dict[str, Any] = field(default_factory=dict)
    #: history.csv as columns (epoch, loss, accuracy, val_loss, val_accuracy, lr, ...).
    history: Dict[str, List[float]] = field(default_factory=dict)
    #: The Trainer's summary (parameters, epochs_run, probability_scale, training settings).
    training_summary: Dict[str, Any] = field(default_factory=dict)
    #: Examples per split and class, lots per split, rejected records (ExampleGen's quarantine summary).
    data_summary: Dict[str, Any] = field(default_factory=dict)
    gallery: List[GalleryItem] = field(default_factory=list)
    #: How many test wafers were misclassified in all (the gallery shows the first of them).
    misclassified_total: int = 0
    #: The confusion matrix of the gallery's own predictions (to check against the Evaluator's), or None.
    gallery_confusion: Optional[List[List[int]]] = None
    #: Precision-recall curves and reliability on the test split (``components.report.curves.test_curves``).
    curves: Dict[str, Any] = field(default_factory=dict)
    #: The run this report belongs to: date, pipeline run id, pushed version and path, data path and size.
    run: Dict[str, Any] = field(default_factory=dict)
    #: Where the numbers came from (artifact URIs), shown at the end of the report.
    sources: Dict[str, str] = field(default_factory=dict)
    title: str = "SP&A-Net run report"
    #: The report's pass / fail decisions (``components.report.verdicts.decide``), made by ``collect``
    #: from the numbers it gathered; None: the renderer decides the same way (hand-made data).
    verdicts: Any = None
