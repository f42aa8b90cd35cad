"""The Evaluator's configuration: the recall gate that keeps defect-missing models out of production.

A model is blessed only when, on the test split,
- overall: the one-sided Clopper-Pearson lower bound of defect recall (defective wafers flagged /
  defective wafers) at ``GateConfig.confidence`` (95%) is >= ``min_defect_recall``. With zero
  misses that needs 299 defective test wafers for 0.99 (``components.clopper_pearson.defects_needed``);
  the point estimate alone would bless a model seen on 20 wafers;
- each true defect class and every value of each slicing feature (inspection stage, map-size and
  aspect-ratio buckets): the point recall >= ``min_defect_recall`` where the slice has at least
  ``min_slice_support`` defective wafers. A smaller slice is "too few to judge": under
  ``too_few="report"`` it is not gated but listed as such in the summary, the run report and the
  terminal; under ``too_few="refuse"`` it refuses the blessing. Both are carried by the custom
  metric ``defect_recall_gate`` (``components.recall_bounds.DefectRecallGate``);
- the false-alarm rate (normal wafers flagged / normal wafers) <= ``max_false_alarm_rate`` overall
  (point estimate), so that flagging every wafer cannot buy the recall;
- defect recall is not more than ``recall_tolerance`` below the last blessed model's: overall on
  the point recall (stock ``Recall``), and on every gated slice on its gate value, which is the
  point recall where the slice is judged and a constant (no change) where it has too few wafers.
  (A change threshold on the stock recall of a slice without defective wafers would compare NaN
  and refuse every model.)

Defect recall is TFMA's stock ``Recall`` on the model's ``defect_score`` output (above 0.5 exactly
when the wafer is flagged) against the transformed ``is_defect`` label, kept as ``defect_recall``;
the bounds come from the same confusion matrix (``components.recall_bounds``). Accuracy and the
confusion matrix (from which per-class precision / recall / F1 and macro-F1 follow) are computed
on the ``probabilities`` output.

In multi-label mode (``GateConfig.patterns``) the defect gate is unchanged in meaning (a wafer is
flagged when any pattern is present at the operating threshold; class slices are the label values,
mixed combinations included); the class metrics become per-pattern true / false positives and false
negatives on the binarized ``probabilities`` (TFMA's ``binarize`` over the pattern ids, cut at 0.5),
from which per-pattern precision, recall and F1 follow, and TFMA's ``ExactMatch`` of
``patterns_present`` against the multi-hot label (the share of wafers whose pattern set is exactly right).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence, Tuple

import tensorflow_model_analysis as tfma

from components import clopper_pearson, recall_bounds
from components.config import DEFECT_SCORE, IS_DEFECT_XF, LABEL_XF, PATTERNS_PRESENT, PATTERNS_XF, PROBABILITIES
from spanet.data.classes import NORMAL_CLASS
from spanet.serving.contract import EXAMPLES_SIGNATURE, LABELS_SIGNATURE
from components.features import ASPECT_BUCKET_KEY, LABEL_KEY, SIZE_BUCKET_KEY, STAGE_KEY

DEFECT_RECALL = "defect_recall"
FALSE_ALARM_RATE = "false_alarm_rate"
DEFECT_PRECISION = "defect_precision"
#: The custom metrics' thresholded keys (components.recall_bounds).
DEFECT_RECALL_LOWER_BOUND = recall_bounds.DEFECT_RECALL_LOWER_BOUND
DEFECT_RECALL_GATE = recall_bounds.DEFECT_RECALL_GATE
ACCURACY = "accuracy"
#: Multi-label mode: the share of wafers whose predicted pattern set equals the true one.
EXACT_MATCH = "exact_match"
#: Multi-label mode: per-pattern counts (binarized by pattern id), from which precision / recall / F1 follow.
PATTERN_COUNTS = ("TruePositives", "FalseNegatives", "FalsePositives")
#: The signature TFMA feeds serialized tf.Examples to, and the one that yields the labels.
EVAL_SIGNATURE = EXAMPLES_SIGNATURE


@dataclass(frozen=True)
class GateConfig:
    """The blessing thresholds (configuration, not code)."""

    min_defect_recall: float = 0.99
    max_false_alarm_rate: float = 0.10
    recall_tolerance: float = 0.005
    #: The classes slices and reports cover; () until the run's classes are resolved.
    class_names: Tuple[str, ...] = ()
    normal_class: str = NORMAL_CLASS
    #: Multi-label mode: the patterns (the model's output columns); () for single-label.
    patterns: Tuple[str, ...] = ()
    slice_features: Tuple[str, ...] = (STAGE_KEY, SIZE_BUCKET_KEY, ASPECT_BUCKET_KEY)
    #: Confidence of the one-sided lower bound the overall recall is gated on (and of the FAR upper bound).
    confidence: float = 0.95
    #: Level of the two-sided intervals reported (not gated).
    interval_confidence: float = 0.95
    #: Defective wafers a class / feature slice needs before its point recall is judged.
    min_slice_support: int = 30
    #: A gated slice below min_slice_support: "report" (not gated, listed as too few to judge) or "refuse".
    too_few: str = clopper_pearson.TOO_FEW_REPORT

    def __post_init__(self):
        if not 0.0 <= self.min_defect_recall <= 1.0:
            raise ValueError(f"min_defect_recall must be in [0, 1]; got {self.min_defect_recall!r}")
        if not 0.0 <= self.max_false_alarm_rate <= 1.0:
            raise ValueError(f"max_false_alarm_rate must be in [0, 1]; got {self.max_false_alarm_rate!r}")
        if self.recall_tolerance < 0:
            raise ValueError(f"recall_tolerance must be >= 0; got {self.recall_tolerance!r}")
        for name in ("confidence", "interval_confidence"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1); got {value!r}")
        clopper_pearson.check_policy(self.min_slice_support, self.too_few)
        # Empty class_names: filled in once the run's classes are known (pipeline.classes.resolve_classes).
        if self.class_names and self.normal_class not in self.class_names:
            raise ValueError(f"normal_class {self.normal_class!r} must be one of class_names {list(self.class_names)}")

    @property
    def defect_classes(self) -> Tuple[str, ...]:
        return tuple(c for c in self.class_names if c != self.normal_class)


def _metric(class_name: str, name: str, **kwargs) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=class_name, config=json.dumps({"name": name}), **kwargs)


def class_slices(class_names: Sequence[str]) -> Tuple[tfma.SlicingSpec, ...]:
    """One slice per true class, by the raw label feature."""
    return tuple(tfma.SlicingSpec(feature_values={LABEL_KEY: name}) for name in class_names)


def gated_slices(gate: GateConfig) -> Tuple[tfma.SlicingSpec, ...]:
    """The class and feature slices gated on ``defect_recall_gate`` (overall is gated on the lower bound)."""
    per_feature = tuple(tfma.SlicingSpec(feature_keys=[feature]) for feature in gate.slice_features)
    return (*class_slices(gate.defect_classes), *per_feature)


def build_eval_config(gate: GateConfig) -> tfma.EvalConfig:
    """The EvalConfig whose thresholds decide the blessing."""
    overall = tfma.SlicingSpec()
    per_feature = tuple(tfma.SlicingSpec(feature_keys=[feature]) for feature in gate.slice_features)
    judged = gated_slices(gate)
    recall_change = tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -gate.recall_tolerance}
    )
    lower_bound_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": gate.min_defect_recall})
    )
    slice_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": gate.min_defect_recall}),
        change_threshold=recall_change,
    )
    false_alarm_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": gate.max_false_alarm_rate})
    )
    defect_metrics = tfma.MetricsSpec(
        output_names=[DEFECT_SCORE],
        metrics=[
            # The point estimate (a test checks it equals a direct count); gated only against the baseline.
            _metric(
                "Recall",
                DEFECT_RECALL,
                per_slice_thresholds=[
                    tfma.PerSliceMetricThreshold(
                        slicing_specs=[overall], threshold=tfma.MetricThreshold(change_threshold=recall_change)
                    )
                ],
            ),
            recall_bounds.metric_config(
                recall_bounds.DefectRecallBounds,
                confidence=gate.confidence,
                interval_confidence=gate.interval_confidence,
                per_slice_thresholds=[
                    tfma.PerSliceMetricThreshold(slicing_specs=[overall], threshold=lower_bound_threshold)
                ],
            ),
            recall_bounds.metric_config(
                recall_bounds.DefectRecallGate,
                min_support=gate.min_slice_support,
                too_few=gate.too_few,
                per_slice_thresholds=(
                    [tfma.PerSliceMetricThreshold(slicing_specs=list(judged), threshold=slice_threshold)]
                    if judged
                    else []
                ),
            ),
            _metric(
                "FallOut",
                FALSE_ALARM_RATE,
                per_slice_thresholds=[
                    tfma.PerSliceMetricThreshold(slicing_specs=[overall], threshold=false_alarm_threshold)
                ],
            ),
            recall_bounds.metric_config(
                recall_bounds.FalseAlarmBounds,
                confidence=gate.confidence,
                interval_confidence=gate.interval_confidence,
            ),
            _metric("Precision", DEFECT_PRECISION),
        ],
    )
    if gate.patterns:
        class_metrics = [
            tfma.MetricsSpec(output_names=[PROBABILITIES], metrics=[tfma.MetricConfig(class_name="ExampleCount")]),
            tfma.MetricsSpec(
                output_names=[PROBABILITIES],
                binarize=tfma.BinarizationOptions(class_ids={"values": list(range(len(gate.patterns)))}),
                metrics=[tfma.MetricConfig(class_name=name) for name in PATTERN_COUNTS],
            ),
            tfma.MetricsSpec(output_names=[PATTERNS_PRESENT], metrics=[_metric("ExactMatch", EXACT_MATCH)]),
        ]
        labels = {PROBABILITIES: PATTERNS_XF, DEFECT_SCORE: IS_DEFECT_XF, PATTERNS_PRESENT: PATTERNS_XF}
    else:
        class_metrics = [
            tfma.MetricsSpec(
                output_names=[PROBABILITIES],
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    _metric("SparseCategoricalAccuracy", ACCURACY),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ],
            )
        ]
        labels = {PROBABILITIES: LABEL_XF, DEFECT_SCORE: IS_DEFECT_XF}
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=EVAL_SIGNATURE,
                model_type="tf_generic",
                preprocessing_function_names=[LABELS_SIGNATURE],
                label_keys=labels,
            )
        ],
        slicing_specs=[overall, *class_slices(gate.class_names), *per_feature],
        metrics_specs=[defect_metrics, *class_metrics],
    )


def with_min_defect_recall(eval_config: tfma.EvalConfig, min_defect_recall: float) -> tfma.EvalConfig:
    """A copy of ``eval_config`` (from build_eval_config) gated at another minimum defect recall.

    The run-time parameter of the compiled pipeline (``components.run_parameters.Evaluator``): it
    replaces every threshold that ``build_eval_config`` derives from ``GateConfig.min_defect_recall``
    (the overall lower bound and each judged slice's gate value) and nothing else.
    """
    GateConfig(min_defect_recall=min_defect_recall)  # the same range check as the configuration's
    result = tfma.EvalConfig()
    result.CopyFrom(eval_config)
    gated = (recall_bounds.DefectRecallBounds.__name__, recall_bounds.DefectRecallGate.__name__)
    changed = 0
    for spec in result.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name not in gated:
                continue
            for threshold in metric.per_slice_thresholds:
                value = threshold.threshold.value_threshold
                if value.HasField("lower_bound"):
                    value.lower_bound.value = min_defect_recall
                    changed += 1
    if not changed:
        raise ValueError("the eval_config has no defect-recall threshold to set (is it build_eval_config's?)")
    return result
