"""The Evaluator's results as plain numbers: gate metrics per slice, and class metrics from the confusion matrix.

Per-class precision / recall / F1, macro-F1 and accuracy are derived from TFMA's
multi-class confusion matrix (arg-max predictions), so they agree with each other and
with the matrix a report draws.

The gate is read back from the EvalConfig the Evaluator wrote beside its results, so the summary
states the thresholds, confidence, minimum support and too-few policy that actually decided the
blessing: ``overall`` (defect recall, its one-sided lower bound, support, interval and verdict),
``gated_slices`` (one entry per gated slice: point estimate, interval, support, the rule that
decided it and the verdict) and ``too_few_to_judge`` (the gated slices with fewer defective wafers
than the minimum support). The result is strict JSON: NaN and infinities become None.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow_model_analysis as tfma

from components import clopper_pearson as cp
from components import recall_bounds as rb
from components.config import DEFECT_SCORE, PATTERNS_PRESENT, PROBABILITIES


def _slice_name(slice_key) -> str:
    if not slice_key:
        return "overall"
    return ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in slice_key)


def _metric_value(value) -> Optional[float]:
    """The number in a TFMA metric value (double, or the point estimate of a bounded value)."""
    if isinstance(value, dict):
        for key in ("doubleValue", "boundedValue"):
            if key in value:
                inner = value[key]
                return float(inner["value"] if isinstance(inner, dict) else inner)
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def class_metrics_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> Dict[str, Any]:
    """Accuracy, per-class precision / recall / F1 / support and macro-F1 from a K x K matrix (rows: truth)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(true_positive.sum() / matrix.sum()) if matrix.sum() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class": per_class,
    }


def pattern_metrics_from_counts(values: Dict[str, Optional[float]], patterns: Sequence[str]) -> Dict[str, Any]:
    """Multi-label: per-pattern precision / recall / F1 / support and macro-F1 from the binarized
    true / false positive and false negative counts of one slice; ``accuracy`` is the exact-match rate."""
    per_class = {}
    f1s = []
    for i, name in enumerate(patterns):
        tp, fn, fp = (
            values.get(f"{PROBABILITIES}/{metric}/class_{i}") or 0.0
            for metric in ("true_positives", "false_negatives", "false_positives")
        )
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(round(tp + fn))}
        if tp + fn:
            f1s.append(f1)
    return {
        "accuracy": values.get(f"{PATTERNS_PRESENT}/exact_match", float("nan")),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "per_class": per_class,
    }


def confusion_matrix_from_plot(plot: Dict[str, Any], num_classes: int) -> np.ndarray:
    """The arg-max confusion matrix from TFMA's MultiClassConfusionMatrixPlot (as a dict)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    plot_data = plot.get("multiClassConfusionMatrixAtThresholds", {})
    matrices = plot_data.get("matrices", [])
    if not matrices:
        return matrix
    for entry in matrices[0].get("entries", []):
        actual = int(entry.get("actualClassId", 0))
        predicted = int(entry.get("predictedClassId", 0))
        if 0 <= actual < num_classes and 0 <= predicted < num_classes:
            matrix[actual, predicted] += int(float(entry.get("numWeightedExamples", 0)))
    return matrix


def display_order(names: Sequence[str], order: Optional[Sequence[str]]) -> List[int]:
    """Indices of ``names`` (the model's order) in ``order`` (the configured one), then any others as they come."""
    index = {name: i for i, name in enumerate(names)}
    first = [index[name] for name in (order or ()) if name in index]
    return first + [i for i in range(len(names)) if i not in set(first)]


def reorder_matrix(matrix, positions: Sequence[int]) -> List[List[int]]:
    """A square matrix with its rows and columns both taken in ``positions`` order."""
    matrix = (
        np.asarray(matrix, dtype=np.int64).reshape(len(positions), len(positions))
        if len(positions)
        else np.zeros((0, 0))
    )
    return matrix[np.ix_(positions, positions)].tolist() if len(positions) else []


def strict_json(value: Any) -> Any:
    """``value`` with every NaN / infinite float (also numpy scalars) replaced by None, recursively."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _key(name: str) -> str:
    return f"{DEFECT_SCORE}/{name}"


def _config_of(metric_config) -> Dict[str, Any]:
    try:
        return json.loads(metric_config.config) if metric_config.config else {}
    except ValueError:
        return {}


def gate_settings(eval_config) -> Dict[str, Any]:
    """The gate as the EvalConfig states it (defaults of ``GateConfig`` where it says nothing).

    Keys: min_defect_recall, confidence, interval_confidence, min_slice_support, too_few,
    max_false_alarm_rate, gated_slicing_specs (SlicingSpec protos of the class / feature slices).
    """
    settings: Dict[str, Any] = {
        "min_defect_recall": 0.99,
        "confidence": 0.95,
        "interval_confidence": 0.95,
        "min_slice_support": 30,
        "too_few": cp.TOO_FEW_REPORT,
        "max_false_alarm_rate": None,
        "gated_slicing_specs": [],
    }
    if eval_config is None:
        return settings
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            config = _config_of(metric)
            if metric.class_name == rb.DefectRecallBounds.__name__:
                settings["confidence"] = float(config.get("confidence", settings["confidence"]))
                settings["interval_confidence"] = float(
                    config.get("interval_confidence", settings["interval_confidence"])
                )
                for threshold in metric.per_slice_thresholds:
                    if threshold.threshold.value_threshold.HasField("lower_bound"):
                        settings["min_defect_recall"] = threshold.threshold.value_threshold.lower_bound.value
            elif metric.class_name == rb.DefectRecallGate.__name__:
                settings["min_slice_support"] = int(config.get("min_support", settings["min_slice_support"]))
                settings["too_few"] = config.get("too_few", settings["too_few"])
                for threshold in metric.per_slice_thresholds:
                    settings["gated_slicing_specs"].extend(threshold.slicing_specs)
            elif metric.class_name == "FallOut":
                for threshold in metric.per_slice_thresholds:
                    if threshold.threshold.value_threshold.HasField("upper_bound"):
                        settings["max_false_alarm_rate"] = threshold.threshold.value_threshold.upper_bound.value
    return settings


def _count(value: Optional[float]) -> Optional[int]:
    return None if value is None or not math.isfinite(value) else int(round(value))


def _slice_entry(name: str, values: Dict[str, Optional[float]]) -> Dict[str, Any]:
    support = values.get(_key(rb.DEFECT_SUPPORT))
    return {
        "slice": name,
        "defect_recall": values.get(_key(rb.DEFECT_RECALL_POINT), values.get(_key("defect_recall"))),
        "interval": [values.get(_key(rb.DEFECT_RECALL_CI_LOW)), values.get(_key(rb.DEFECT_RECALL_CI_HIGH))],
        "lower_bound": values.get(_key(rb.DEFECT_RECALL_LOWER_BOUND)),
        "support": _count(support),
        "misses": _count(values.get(_key(rb.DEFECT_MISSES))),
        "gate_value": values.get(_key(rb.DEFECT_RECALL_GATE)),
    }


_RECALL_GATE_KEYS = ("defect_recall", rb.DEFECT_RECALL_LOWER_BOUND, rb.DEFECT_RECALL_GATE)


def judge_slices(
    slices: Dict[str, Dict[str, Optional[float]]],
    slice_keys: Dict[str, Tuple],
    settings: Dict[str, Any],
    recall_failures: Dict[str, List[str]],
) -> List[Dict[str, Any]]:
    """One entry per gated slice (overall first), with the rule that decided it and the verdict.

    ``recall_failures``: per slice name, the recall keys TFMA's validator failed there (a change
    against the baseline can fail a slice whose value passes: the verdict is then "fail" too).
    """
    minimum, min_support, too_few = settings["min_defect_recall"], settings["min_slice_support"], settings["too_few"]
    specs = [tfma.slicer.SingleSliceSpec(spec=spec) for spec in settings["gated_slicing_specs"]]
    entries = []
    if "overall" in slices:
        entry = _slice_entry("overall", slices["overall"])
        bound = entry["lower_bound"]
        passed = bound is not None and math.isfinite(bound) and bound >= minimum
        entry["rule"] = cp.RULE_LOWER_BOUND
        entry["verdict"] = cp.VERDICT_PASS if passed else cp.VERDICT_FAIL
        entries.append(entry)
    gated = [
        name for name in slices if name != "overall" and any(s.is_slice_applicable(slice_keys[name]) for s in specs)
    ]
    order = {name: i for i, name in enumerate(slices)}

    def rank(name: str):
        for index, spec in enumerate(specs):
            if spec.is_slice_applicable(slice_keys[name]):
                return index, name
        return len(specs), order[name]

    for name in sorted(gated, key=rank):
        entry = _slice_entry(name, slices[name])
        support, point = entry["support"], entry["defect_recall"]
        entry["rule"] = cp.slice_rule(support, min_support)
        if support is not None and support >= min_support:
            passed = point is not None and math.isfinite(point) and point >= minimum
            entry["verdict"] = cp.VERDICT_PASS if passed else cp.VERDICT_FAIL
        else:
            entry["verdict"] = cp.VERDICT_TOO_FEW if too_few == cp.TOO_FEW_REPORT else cp.VERDICT_FAIL
        entries.append(entry)
    for entry in entries:
        failed = recall_failures.get(entry["slice"], [])
        entry["evaluator_failures"] = failed
        if failed:
            entry["verdict"] = cp.VERDICT_FAIL
    return entries


def summarize_evaluation(
    evaluator_output_uri: str, class_names: Sequence[str], order: Optional[Sequence[str]] = None
) -> Dict[str, Any]:
    """Gate metrics for every slice, the gate's verdict per gated slice, class metrics overall, and the
    validation verdict.

    ``class_names`` are the model's outputs in its own order (the ids the Evaluator saw); ``order``,
    the configured class order, is the order the summary lists them in (the confusion matrix too).

    Keys: defect_recall (point), defect_recall_lower_bound, false_alarm_rate, defect_precision,
    overall, gated_slices, too_few_to_judge, gate, confusion_matrix, class_names, accuracy,
    macro_f1, per_class, slices ({slice: {"output/metric": value}}), validation_ok,
    validation_failures, evaluator_output. Strict JSON (None for undefined numbers).
    """
    from google.protobuf import json_format
    from tensorflow_model_analysis.writers import eval_config_writer

    metrics = tfma.load_metrics(evaluator_output_uri)
    slices: Dict[str, Dict[str, Optional[float]]] = {}
    slice_keys: Dict[str, Tuple] = {}
    for record in metrics:
        slice_key = tfma.slicer.deserialize_slice_key(record.slice_key)
        name = _slice_name(slice_key)
        slice_keys[name] = slice_key
        values = slices.setdefault(name, {})
        for key_and_value in record.metric_keys_and_values:
            key = key_and_value.key
            if key.is_diff:
                continue
            number = _metric_value(json_format.MessageToDict(key_and_value.value))
            if number is not None:
                output = key.output_name or ""
                name = f"{output}/{key.name}" if output else key.name
                if key.HasField("sub_key") and key.sub_key.HasField("class_id"):
                    name += f"/class_{key.sub_key.class_id.value}"  # binarized per pattern (multi-label)
                values[name] = number

    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    for record in tfma.load_plots(evaluator_output_uri):
        if tfma.slicer.deserialize_slice_key(record.slice_key):
            continue
        for key_and_value in record.plot_keys_and_values:
            if key_and_value.key.output_name == PROBABILITIES:
                plot = json_format.MessageToDict(key_and_value.value)
                matrix = confusion_matrix_from_plot(plot, len(class_names))

    try:
        eval_config = eval_config_writer.load_eval_run(evaluator_output_uri)[0]
    except Exception:  # noqa: BLE001 - an unreadable config leaves the gate at its defaults
        eval_config = None
    settings = gate_settings(eval_config)

    validation = tfma.load_validation_result(evaluator_output_uri)
    failures: List[str] = []
    recall_failures: Dict[str, List[str]] = {}
    for failure in validation.metric_validations_per_slice:
        slice_name = _slice_name(tfma.slicer.deserialize_slice_key(failure.slice_key))
        for item in failure.failures:
            key = item.metric_key
            label = f"{key.name} (change vs baseline)" if key.is_diff else key.name
            if item.message.strip():
                failures.append(f"{slice_name}: {label}: {item.message.strip()}".replace("\n", " "))
            else:
                failures.append(
                    (
                        f"{slice_name}: {label} = {item.metric_value.double_value.value:.4f} "
                        f"fails {item.metric_threshold}"
                    ).replace("\n", " ")
                )
            if key.name in _RECALL_GATE_KEYS:
                recall_failures.setdefault(slice_name, []).append(label)
    for spec in validation.missing_slices:
        failures.append(f"missing slice {spec}".replace("\n", " "))

    gated = judge_slices(slices, slice_keys, settings, recall_failures)
    overall_values = slices.get("overall", {})
    multilabel = f"{PROBABILITIES}/true_positives/class_0" in overall_values
    if multilabel:
        class_metrics = pattern_metrics_from_counts(overall_values, class_names)
    else:
        class_metrics = class_metrics_from_confusion(matrix, class_names)
    positions = display_order(class_names, order)
    shown = [class_names[i] for i in positions]
    class_metrics["per_class"] = {name: class_metrics["per_class"][name] for name in shown}
    overall_recall = next((e for e in gated if e["slice"] == "overall"), _slice_entry("overall", overall_values))
    misses = overall_recall.get("misses")
    minimum, confidence = settings["min_defect_recall"], settings["confidence"]
    false_alarm_rate = overall_values.get(_key("false_alarm_rate"))
    max_far = settings["max_false_alarm_rate"]
    overall = {
        **{k: v for k, v in overall_recall.items() if k != "slice"},
        "min_defect_recall": minimum,
        "confidence": confidence,
        "interval_confidence": settings["interval_confidence"],
        # Defective test wafers the lower bound needs to reach min_defect_recall with the misses seen.
        "defects_needed": cp.defects_needed(minimum, confidence, misses)
        if misses is not None and minimum < 1
        else None,
        "false_alarm_rate": false_alarm_rate,
        "false_alarm_interval": [
            overall_values.get(_key(rb.FALSE_ALARM_RATE_CI_LOW)),
            overall_values.get(_key(rb.FALSE_ALARM_RATE_CI_HIGH)),
        ],
        "false_alarm_upper_bound": overall_values.get(_key(rb.FALSE_ALARM_RATE_UPPER_BOUND)),
        "normal_support": _count(overall_values.get(_key(rb.NORMAL_SUPPORT))),
        "false_alarms": _count(overall_values.get(_key(rb.FALSE_ALARMS))),
        "max_false_alarm_rate": max_far,
        "false_alarm_verdict": (
            None
            if max_far is None or false_alarm_rate is None
            else cp.VERDICT_PASS
            if false_alarm_rate <= max_far
            else cp.VERDICT_FAIL
        ),
    }
    gate = {k: v for k, v in settings.items() if k != "gated_slicing_specs"}
    summary = {
        "defect_recall": overall_values.get(_key("defect_recall")),
        "defect_recall_lower_bound": overall_values.get(_key(rb.DEFECT_RECALL_LOWER_BOUND)),
        "false_alarm_rate": false_alarm_rate,
        "defect_precision": overall_values.get(_key("defect_precision")),
        "overall": overall,
        "gated_slices": gated,
        "too_few_to_judge": [e["slice"] for e in gated if e["rule"].startswith(cp.RULE_TOO_FEW)],
        "gate": gate,
        "multilabel": multilabel,
        "confusion_matrix": [] if multilabel else reorder_matrix(matrix, positions),
        "class_names": shown,
        **class_metrics,
        "slices": slices,
        "validation_ok": bool(validation.validation_ok),
        "validation_failures": failures,
        "evaluator_output": os.path.abspath(evaluator_output_uri)
        if "://" not in evaluator_output_uri
        else evaluator_output_uri,
    }
    return strict_json(summary)


#: Slices too few to judge named on the terminal (a multi-label run has one per pattern combination).
_FEW_SHOWN = 8


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def evaluation_lines(evaluation: Dict[str, Any], min_defect_recall: float = 0.99) -> List[str]:
    """The terminal's lines for a :func:`summarize_evaluation` result (``pipeline/run_local.py`` prints them).

    Overall: point recall, support and misses, the lower bound and its verdict, false-alarm rate;
    the class metrics; the gated slices too few to judge; failing slices; the Evaluator's failures.
    ``min_defect_recall`` is only used when the summary carries no gate (older summaries).
    """
    overall = evaluation.get("overall") or {}
    gate = evaluation.get("gate") or {}
    minimum = gate.get("min_defect_recall", min_defect_recall)
    confidence = gate.get("confidence", 0.95)
    lines = [
        f"Evaluation on the test split: defect recall {_number(evaluation.get('defect_recall'))} "
        f"on {overall.get('support', 'n/a')} defective wafers ({overall.get('misses', 'n/a')} missed); "
        f"{confidence:.0%} lower bound {_number(evaluation.get('defect_recall_lower_bound'))} "
        f"(gate: lower bound >= {minimum:g}: {overall.get('verdict', 'n/a')}), "
        f"false-alarm rate {_number(evaluation.get('false_alarm_rate'))} "
        f"on {overall.get('normal_support', 'n/a')} normal wafers, "
        f"{'exact-match rate' if evaluation.get('multilabel') else 'accuracy'} {_number(evaluation.get('accuracy'))}, "
        f"macro-F1 {_number(evaluation.get('macro_f1'))}"
    ]
    if overall.get("verdict") == "fail" and overall.get("defects_needed"):
        lines.append(
            f"  with {overall.get('misses')} missed, the lower bound reaches {minimum:g} "
            f"from {overall['defects_needed']} defective test wafers"
        )
    for name, metrics in evaluation.get("per_class", {}).items():
        lines.append(
            f"  {name:>10}: precision {metrics['precision']:.3f}  recall {metrics['recall']:.3f}  "
            f"F1 {metrics['f1']:.3f}  support {metrics['support']}"
        )
    gated = evaluation.get("gated_slices") or []
    few = [e for e in gated if str(e.get("rule", "")).startswith("too few")]
    if few:
        policy = gate.get("too_few", "report")
        lines.append(
            f"  too few to judge (n < {gate.get('min_slice_support')} defective wafers; "
            + ("not gated" if policy == "report" else "refuses the blessing")
            + "): "
            + ", ".join(
                f"{e['slice']} (n={e.get('support')}, recall {_number(e.get('defect_recall'), 3)})"
                for e in few[:_FEW_SHOWN]
            )
            + (f" and {len(few) - _FEW_SHOWN} more (listed in the run report)" if len(few) > _FEW_SHOWN else "")
        )
    for entry in gated:
        if entry.get("verdict") == "fail" and entry["slice"] != "overall":
            low, high = (list(entry.get("interval") or []) + [None, None])[:2]
            lines.append(
                f"  slice failing: {entry['slice']}: recall {_number(entry.get('defect_recall'))} "
                f"[{_number(low)}, {_number(high)}] on n={entry.get('support')} ({entry.get('rule')})"
            )
    for failure in evaluation.get("validation_failures", []):
        lines.append(f"  gate failure: {failure}")
    return lines
