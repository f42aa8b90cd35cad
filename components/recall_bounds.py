"""Custom TFMA 0.47 metrics: exact binomial bounds for defect recall and the false-alarm rate, per slice.

Each metric is built on :func:`tfma.metrics.binary_confusion_matrices` at threshold 0.5 with the
same arguments as the stock ``Recall`` / ``FallOut``, so TFMA computes the matrix once and the
counts are the stock metrics' (a wafer is flagged when ``defect_score > 0.5``; its label is the
``is_defect`` flag). Reference them in a ``MetricConfig`` with ``module="components.recall_bounds"``
so that Beam workers import this module (:func:`metric_config`). The bounds themselves and
``defects_needed`` (the data sizing's helper) are plain functions in :mod:`components.clopper_pearson`
(scipy only, no TensorFlow) and are re-exported here.

Emitted keys (every key on every slice: TFMA's validator fails a thresholded key missing from any
slice, and NaN fails every bound, so thresholded keys are never NaN):

``DefectRecallBounds`` (config name ``defect_recall_lower_bound``)
    ``defect_recall_lower_bound``: the one-sided Clopper-Pearson lower bound at ``confidence``
    (0 with no defective wafer); ``defect_support`` (defective wafers), ``defect_misses``,
    ``defect_recall_point`` (NaN with no defective wafer), ``defect_recall_ci_low`` /
    ``defect_recall_ci_high`` (two-sided interval at ``interval_confidence``; 0 / 1 when n = 0).
``DefectRecallGate`` (config name ``defect_recall_gate``)
    ``defect_recall_gate``: the value the per-slice recall thresholds check
    (:func:`components.clopper_pearson.gate_value`): the point recall with at least
    ``min_support`` defective wafers, else 1.0 under ``too_few="report"`` (not gated; the summary
    lists the slice as too few to judge) or 0.0 under ``too_few="refuse"`` (refuses the blessing).
``FalseAlarmBounds`` (config name ``false_alarm_rate_upper_bound``)
    ``false_alarm_rate_upper_bound`` (one-sided upper bound at ``confidence``), ``normal_support``
    (normal wafers), ``false_alarms``, ``false_alarm_rate_ci_low`` / ``false_alarm_rate_ci_high``.

Why not TFMA's own confidence intervals (``EvalConfig.options.compute_confidence_intervals``,
bootstrap or jackknife)? Both resample the test set: with zero misses every resample has zero
misses too, so the interval of a recall of 1.0 is [1.0, 1.0], a zero-width interval that claims
certainty from any number of wafers. Near a recall of 1 (where this gate lives) that is dishonest,
so the gate uses the exact Clopper-Pearson bounds here and not ``compute_confidence_intervals``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import binary_confusion_matrices, metric_types, metric_util

from components import clopper_pearson

# The exact bounds and the sizing helper, re-exported (they live in components.clopper_pearson, scipy only).
from components.clopper_pearson import defects_needed, interval, lower_bound, upper_bound  # noqa: F401

#: The module name a MetricConfig must carry (Beam workers import it by this name).
MODULE = "components.recall_bounds"
#: A wafer is flagged defective when its defect score is above this (as for stock Recall / FallOut).
FLAG_THRESHOLD = 0.5

DEFECT_RECALL_LOWER_BOUND = "defect_recall_lower_bound"
DEFECT_RECALL_GATE = "defect_recall_gate"
DEFECT_SUPPORT = "defect_support"
DEFECT_MISSES = "defect_misses"
DEFECT_RECALL_POINT = "defect_recall_point"
DEFECT_RECALL_CI_LOW = "defect_recall_ci_low"
DEFECT_RECALL_CI_HIGH = "defect_recall_ci_high"
FALSE_ALARM_RATE_UPPER_BOUND = "false_alarm_rate_upper_bound"
NORMAL_SUPPORT = "normal_support"
FALSE_ALARMS = "false_alarms"
FALSE_ALARM_RATE_CI_LOW = "false_alarm_rate_ci_low"
FALSE_ALARM_RATE_CI_HIGH = "false_alarm_rate_ci_high"


def _counts(matrices: binary_confusion_matrices.Matrices) -> Dict[str, float]:
    (tp,), (fn,), (tn,), (fp,) = matrices.tp, matrices.fn, matrices.tn, matrices.fp
    return {"tp": float(tp), "fn": float(fn), "tn": float(tn), "fp": float(fp)}


def _whole(value: float) -> float:
    """Counts are sums of unit weights: round off float noise (weighted counts stay as they are)."""
    rounded = round(value)
    return float(rounded) if abs(value - rounded) < 1e-6 else value


def recall_values(tp: float, fn: float, confidence: float, interval_confidence: float) -> Dict[str, float]:
    """The ``DefectRecallBounds`` values from the counts of caught (tp) and missed (fn) defective wafers."""
    caught, misses = _whole(tp), _whole(fn)
    support = caught + misses
    low, high = clopper_pearson.interval(caught, support, interval_confidence)
    return {
        DEFECT_RECALL_LOWER_BOUND: clopper_pearson.lower_bound(caught, support, confidence),
        DEFECT_SUPPORT: support,
        DEFECT_MISSES: misses,
        DEFECT_RECALL_POINT: caught / support if support > 0 else float("nan"),
        DEFECT_RECALL_CI_LOW: low,
        DEFECT_RECALL_CI_HIGH: high,
    }


def false_alarm_values(fp: float, tn: float, confidence: float, interval_confidence: float) -> Dict[str, float]:
    """The ``FalseAlarmBounds`` values from the counts of flagged (fp) and passed (tn) normal wafers."""
    alarms, passed = _whole(fp), _whole(tn)
    support = alarms + passed
    low, high = clopper_pearson.interval(alarms, support, interval_confidence)
    return {
        FALSE_ALARM_RATE_UPPER_BOUND: clopper_pearson.upper_bound(alarms, support, confidence),
        NORMAL_SUPPORT: support,
        FALSE_ALARMS: alarms,
        FALSE_ALARM_RATE_CI_LOW: low,
        FALSE_ALARM_RATE_CI_HIGH: high,
    }


class _CountsMetric(tfma.metrics.Metric):
    """A metric whose values follow from the binary confusion matrix at FLAG_THRESHOLD."""

    #: The key names emitted; the first is the metric's own name (the one thresholds refer to).
    VALUE_NAMES: tuple = ()

    def __init__(self, name: Optional[str] = None, **kwargs):
        super().__init__(metric_util.merge_per_key_computations(self._computations), name=name, **kwargs)

    def _default_name(self) -> str:
        return self.VALUE_NAMES[0]

    def _values(self, counts: Dict[str, float], **kwargs) -> Dict[str, float]:
        raise NotImplementedError

    def _computations(
        self,
        name: Optional[str] = None,
        eval_config: Optional[tfma.EvalConfig] = None,
        model_name: str = "",
        output_name: str = "",
        sub_key: Optional[metric_types.SubKey] = None,
        aggregation_type: Optional[metric_types.AggregationType] = None,
        class_weights: Optional[Dict[int, float]] = None,
        example_weighted: bool = False,
        **kwargs,
    ) -> metric_types.MetricComputations:
        def key(value_name: str) -> metric_types.MetricKey:
            return metric_types.MetricKey(
                name=value_name,
                model_name=model_name,
                output_name=output_name,
                sub_key=sub_key,
                aggregation_type=aggregation_type,
                example_weighted=example_weighted,
            )

        # Exactly the stock Recall's / FallOut's matrix computation (TFMA runs it once for all of them).
        computations = binary_confusion_matrices.binary_confusion_matrices(
            thresholds=[FLAG_THRESHOLD],
            eval_config=eval_config,
            model_name=model_name,
            output_name=output_name,
            sub_key=sub_key,
            aggregation_type=aggregation_type,
            class_weights=class_weights,
            example_weighted=example_weighted,
            preprocessors=None,
        )
        matrices_key = computations[-1].keys[-1]
        names = [name or self.VALUE_NAMES[0], *self.VALUE_NAMES[1:]]
        keys = [key(n) for n in names]

        def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, float]:
            values = self._values(_counts(metrics[matrices_key]), **kwargs)
            return {k: float(values[default]) for k, default in zip(keys, self.VALUE_NAMES)}

        computations.append(metric_types.DerivedMetricComputation(keys=keys, result=result))
        return computations


class DefectRecallBounds(_CountsMetric):
    """Defect recall with its exact bounds: lower bound (the metric's own value), support, misses, interval."""

    VALUE_NAMES = (
        DEFECT_RECALL_LOWER_BOUND,
        DEFECT_SUPPORT,
        DEFECT_MISSES,
        DEFECT_RECALL_POINT,
        DEFECT_RECALL_CI_LOW,
        DEFECT_RECALL_CI_HIGH,
    )

    def __init__(self, name: Optional[str] = None, confidence: float = 0.95, interval_confidence: float = 0.95):
        clopper_pearson._check(0, 0, confidence)
        clopper_pearson._check(0, 0, interval_confidence)
        super().__init__(name=name, confidence=confidence, interval_confidence=interval_confidence)

    def _values(self, counts, confidence=0.95, interval_confidence=0.95):
        return recall_values(counts["tp"], counts["fn"], confidence, interval_confidence)


class DefectRecallGate(_CountsMetric):
    """The per-slice gate value: point recall with enough defective wafers, else 1.0 ("report") / 0.0 ("refuse")."""

    VALUE_NAMES = (DEFECT_RECALL_GATE,)

    def __init__(
        self, name: Optional[str] = None, min_support: int = 30, too_few: str = clopper_pearson.TOO_FEW_REPORT
    ):
        clopper_pearson.check_policy(min_support, too_few)
        super().__init__(name=name, min_support=int(min_support), too_few=too_few)

    def _values(self, counts, min_support=30, too_few=clopper_pearson.TOO_FEW_REPORT):
        caught, support = _whole(counts["tp"]), _whole(counts["tp"]) + _whole(counts["fn"])
        return {DEFECT_RECALL_GATE: clopper_pearson.gate_value(caught, support, min_support, too_few)}


class FalseAlarmBounds(_CountsMetric):
    """The false-alarm rate's exact bounds: upper bound (the metric's own value), support, false alarms, interval."""

    VALUE_NAMES = (
        FALSE_ALARM_RATE_UPPER_BOUND,
        NORMAL_SUPPORT,
        FALSE_ALARMS,
        FALSE_ALARM_RATE_CI_LOW,
        FALSE_ALARM_RATE_CI_HIGH,
    )

    def __init__(self, name: Optional[str] = None, confidence: float = 0.95, interval_confidence: float = 0.95):
        clopper_pearson._check(0, 0, confidence)
        clopper_pearson._check(0, 0, interval_confidence)
        super().__init__(name=name, confidence=confidence, interval_confidence=interval_confidence)

    def _values(self, counts, confidence=0.95, interval_confidence=0.95):
        return false_alarm_values(counts["fp"], counts["tn"], confidence, interval_confidence)


def metric_config(metric_class: type, **kwargs) -> tfma.MetricConfig:
    """A MetricConfig for one of this module's metrics (``kwargs``: its settings; may carry thresholds)."""
    thresholds = {k: kwargs.pop(k) for k in ("threshold", "per_slice_thresholds") if k in kwargs}
    settings: Dict[str, Any] = {"name": metric_class.VALUE_NAMES[0], **kwargs}
    return tfma.MetricConfig(class_name=metric_class.__name__, module=MODULE, config=json.dumps(settings), **thresholds)


#: Every key these metrics emit.
ALL_KEYS: List[str] = [
    *DefectRecallBounds.VALUE_NAMES,
    *DefectRecallGate.VALUE_NAMES,
    *FalseAlarmBounds.VALUE_NAMES,
]

__all__ = [
    "MODULE",
    "FLAG_THRESHOLD",
    "DefectRecallBounds",
    "DefectRecallGate",
    "FalseAlarmBounds",
    "metric_config",
    "recall_values",
    "false_alarm_values",
    "ALL_KEYS",
    "defects_needed",
    "lower_bound",
    "upper_bound",
    "interval",
    "DEFECT_RECALL_LOWER_BOUND",
    "DEFECT_RECALL_GATE",
    "DEFECT_SUPPORT",
    "DEFECT_MISSES",
    "DEFECT_RECALL_POINT",
    "DEFECT_RECALL_CI_LOW",
    "DEFECT_RECALL_CI_HIGH",
    "FALSE_ALARM_RATE_UPPER_BOUND",
    "NORMAL_SUPPORT",
    "FALSE_ALARMS",
    "FALSE_ALARM_RATE_CI_LOW",
    "FALSE_ALARM_RATE_CI_HIGH",
]
