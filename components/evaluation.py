"""The Evaluator's configuration: the recall gate that keeps defect-missing models out of production.

A model is blessed only when, on the test split,
- defect recall (defective wafers flagged / defective wafers) >= ``min_defect_recall``
  overall, on each true defect class, and on every value of each slicing feature;
- the false-alarm rate (normal wafers flagged / normal wafers) <= ``max_false_alarm_rate``,
  so that flagging every wafer cannot buy the recall;
- defect recall is not more than ``recall_tolerance`` below the last blessed model's.

Defect recall is TFMA's stock ``Recall`` on the model's ``defect_score`` output (above
0.5 exactly when the wafer is flagged) against the transformed ``is_defect`` label.
Accuracy and the confusion matrix (from which per-class precision / recall / F1 and
macro-F1 follow) are computed on the ``probabilities`` output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence, Tuple

import tensorflow_model_analysis as tfma

from components.config import DEFECT_SCORE, IS_DEFECT_XF, LABEL_XF, PROBABILITIES
from components.features import LABEL_KEY

DEFECT_RECALL = "defect_recall"
FALSE_ALARM_RATE = "false_alarm_rate"
DEFECT_PRECISION = "defect_precision"
ACCURACY = "accuracy"
#: The signature TFMA feeds serialized tf.Examples to, and the one that yields the labels.
EVAL_SIGNATURE = "serving_examples"
LABELS_SIGNATURE = "transform_features"


@dataclass(frozen=True)
class GateConfig:
    """The blessing thresholds (configuration, not code)."""

    min_defect_recall: float = 0.99
    max_false_alarm_rate: float = 0.10
    recall_tolerance: float = 0.005
    class_names: Tuple[str, ...] = ()
    normal_class: str = "none"
    slice_features: Tuple[str, ...] = ("stage",)

    def __post_init__(self):
        if not 0.0 <= self.min_defect_recall <= 1.0:
            raise ValueError(f"min_defect_recall must be in [0, 1]; got {self.min_defect_recall!r}")
        if not 0.0 <= self.max_false_alarm_rate <= 1.0:
            raise ValueError(f"max_false_alarm_rate must be in [0, 1]; got {self.max_false_alarm_rate!r}")
        if self.recall_tolerance < 0:
            raise ValueError(f"recall_tolerance must be >= 0; got {self.recall_tolerance!r}")
        if self.normal_class not in self.class_names:
            raise ValueError(f"normal_class {self.normal_class!r} must be one of class_names {list(self.class_names)}")

    @property
    def defect_classes(self) -> Tuple[str, ...]:
        return tuple(c for c in self.class_names if c != self.normal_class)


def _metric(class_name: str, name: str, **kwargs) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=class_name, config=json.dumps({"name": name}), **kwargs)


def class_slices(class_names: Sequence[str]) -> Tuple[tfma.SlicingSpec, ...]:
    """One slice per true class, by the raw label feature."""
    return tuple(tfma.SlicingSpec(feature_values={LABEL_KEY: name}) for name in class_names)


def build_eval_config(gate: GateConfig) -> tfma.EvalConfig:
    """The EvalConfig whose thresholds decide the blessing."""
    overall = tfma.SlicingSpec()
    per_feature = tuple(tfma.SlicingSpec(feature_keys=[feature]) for feature in gate.slice_features)
    defect_class_slices = class_slices(gate.defect_classes)
    recall_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": gate.min_defect_recall}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -gate.recall_tolerance}
        ),
    )
    false_alarm_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": gate.max_false_alarm_rate})
    )
    defect_metrics = tfma.MetricsSpec(
        output_names=[DEFECT_SCORE],
        metrics=[
            _metric(
                "Recall",
                DEFECT_RECALL,
                per_slice_thresholds=[
                    tfma.PerSliceMetricThreshold(
                        slicing_specs=[overall, *defect_class_slices, *per_feature], threshold=recall_threshold
                    )
                ],
            ),
            _metric(
                "FallOut",
                FALSE_ALARM_RATE,
                per_slice_thresholds=[
                    tfma.PerSliceMetricThreshold(slicing_specs=[overall], threshold=false_alarm_threshold)
                ],
            ),
            _metric("Precision", DEFECT_PRECISION),
        ],
    )
    class_metrics = tfma.MetricsSpec(
        output_names=[PROBABILITIES],
        metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            _metric("SparseCategoricalAccuracy", ACCURACY),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ],
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=EVAL_SIGNATURE,
                model_type="tf_generic",
                preprocessing_function_names=[LABELS_SIGNATURE],
                label_keys={PROBABILITIES: LABEL_XF, DEFECT_SCORE: IS_DEFECT_XF},
            )
        ],
        slicing_specs=[overall, *class_slices(gate.class_names), *per_feature],
        metrics_specs=[defect_metrics, class_metrics],
    )
