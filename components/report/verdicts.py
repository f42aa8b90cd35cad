"""The report's pass / fail decisions, made once from the evaluation and the gate's policy (no HTML).

``collect_report_data`` stores :func:`decide`'s result in ``ReportData.verdicts``; the renderer only
shows it (for report data built by hand it decides the same way).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from components.report.data import GatePolicy, ReportData

#: Metric keys of ``summarize_evaluation``'s slices.
DEFECT_RECALL_KEY = "defect_score/defect_recall"
FALSE_ALARM_KEY = "defect_score/false_alarm_rate"
EXAMPLE_COUNT_KEY = "probabilities/example_count"


@dataclass
class GateRow:
    """One metric of the gate table: its value, the gate's bound, the verdict (None: not gated)."""

    key: str
    label: str
    value: Optional[float]
    bound: str = ""
    passed: Optional[bool] = None
    interval: Optional[Sequence[Optional[float]]] = None
    support: str = ""
    rule: str = ""
    #: The row shows a two-sided interval (n/a when the summary has none).
    has_interval: bool = False


@dataclass
class Verdicts:
    """Every decision the report shows."""

    settings: Dict[str, Any]
    gate_rows: List[GateRow]
    slice_rows: List[Dict[str, Any]]
    #: Slices with too few defective wafers to judge.
    too_few: List[str] = field(default_factory=list)
    #: Whether the gallery's own predictions agree with the Evaluator's confusion matrix (None: not checked).
    gallery_consistent: Optional[bool] = None


def gate_settings(evaluation: Mapping[str, Any], gate: GatePolicy) -> Dict[str, Any]:
    """The gate's settings: the summary's own (what the Evaluator used) over the policy the report was given."""
    defaults = {
        "min_defect_recall": gate.min_defect_recall,
        "max_false_alarm_rate": gate.max_false_alarm_rate,
        "confidence": 0.95,
        "interval_confidence": 0.95,
    }
    return {**defaults, **{k: v for k, v in (evaluation.get("gate") or {}).items() if v is not None}}


def gate_rows(evaluation: Mapping[str, Any], settings: Mapping[str, Any]) -> List[GateRow]:
    """Overall defect recall (judged on its lower bound; old summaries without one on the point estimate),
    its lower bound, the false-alarm rate, and accuracy and macro-F1 (shown, not gated)."""
    minimum, max_far, confidence = (
        settings["min_defect_recall"],
        settings["max_false_alarm_rate"],
        settings["confidence"],
    )
    overall = evaluation.get("overall") or {}
    recall, false_alarms = evaluation.get("defect_recall"), evaluation.get("false_alarm_rate")
    bound = overall.get("lower_bound", evaluation.get("defect_recall_lower_bound"))
    support, misses = overall.get("support"), overall.get("misses")
    if overall:
        recall_ok, recall_rule = (
            overall.get("verdict") == "pass",
            f"{confidence:.0%} one-sided lower bound ≥ {minimum:g}",
        )
    else:
        recall_ok, recall_rule = recall is not None and recall >= minimum, "point estimate"
    support_text = "n/a" if support is None else f"{support} defective ({misses} missed)"
    normals = overall.get("normal_support")
    return [
        GateRow(
            "defect_recall",
            "defect recall (overall)",
            recall,
            f"≥ {minimum:g}",
            recall_ok,
            overall.get("interval"),
            support_text,
            recall_rule,
            has_interval=True,
        ),
        GateRow(
            "defect_recall_lower_bound",
            f"defect recall, {confidence:.0%} lower bound (overall)",
            bound,
            f"≥ {minimum:g}",
            None if bound is None else bound >= minimum,
            None,
            support_text,
            "Clopper-Pearson, exact" if bound is not None else "",
        ),
        GateRow(
            "false_alarm_rate",
            "false-alarm rate (overall)",
            false_alarms,
            f"≤ {max_far:g}",
            false_alarms is not None and false_alarms <= max_far,
            overall.get("false_alarm_interval"),
            "n/a" if normals is None else f"{normals} normal ({overall.get('false_alarms')} flagged)",
            "point estimate",
            has_interval=True,
        ),
        GateRow("accuracy", "accuracy", evaluation.get("accuracy")),
        GateRow("macro_f1", "macro-F1", evaluation.get("macro_f1")),
    ]


def slice_recalls(slices: Mapping[str, Mapping[str, float]]) -> List[Tuple[str, float, int]]:
    """(slice, defect recall, examples) for every slice where defect recall is defined; overall first."""
    found = []
    for name, metrics in slices.items():
        value = metrics.get(DEFECT_RECALL_KEY)
        if value is not None and not math.isnan(value):
            found.append((name, float(value), int(metrics.get(EXAMPLE_COUNT_KEY, 0) or 0)))
    return sorted(found, key=lambda item: (item[0] != "overall", item[0]))


def slice_rows(evaluation: Mapping[str, Any], min_defect_recall: float) -> List[Dict[str, Any]]:
    """One row per slice of the per-slice table: every gated slice (overall first, with the rule and
    verdict the summary gives it), then every other slice where defect recall is defined ("not gated")."""
    slices = evaluation.get("slices", {}) or {}
    gated = evaluation.get("gated_slices") or []
    rows: List[Dict[str, Any]] = []
    seen = set()
    for entry in gated:
        seen.add(entry["slice"])
        metrics = slices.get(entry["slice"], {})
        rows.append({**entry, "examples": int(metrics.get(EXAMPLE_COUNT_KEY, 0) or 0), "gated": True})
    for name, value, count in slice_recalls(slices):
        if name in seen:
            continue
        metrics = slices.get(name, {})
        rows.append(
            {
                "slice": name,
                "examples": count,
                "defect_recall": value,
                "gated": False,
                "interval": [
                    metrics.get("defect_score/defect_recall_ci_low"),
                    metrics.get("defect_score/defect_recall_ci_high"),
                ],
                "support": metrics.get("defect_score/defect_support"),
                "misses": metrics.get("defect_score/defect_misses"),
                # Without the summary's gate (older summaries), every slice with a recall was gated on it.
                "rule": "point estimate" if not gated else "not gated",
                "verdict": ("pass" if value >= min_defect_recall else "fail") if not gated else "",
            }
        )
    return rows


def decide(data: ReportData) -> Verdicts:
    """Every verdict of ``data``'s report: the gate table, the slices (and which are too few to judge),
    and whether the gallery's own predictions agree with the Evaluator's confusion matrix."""
    evaluation = data.evaluation
    settings = gate_settings(evaluation, data.gate)
    rows = slice_rows(evaluation, settings["min_defect_recall"])
    consistent = None
    if data.gallery_confusion is not None and not evaluation.get("multilabel"):
        classes = list(evaluation.get("class_names") or data.class_names)
        matrix = evaluation.get("confusion_matrix") or [[0] * len(classes) for _ in classes]
        consistent = bool(np.array_equal(np.asarray(data.gallery_confusion), np.asarray(matrix)))
    return Verdicts(
        settings=settings,
        gate_rows=gate_rows(evaluation, settings),
        slice_rows=rows,
        too_few=[r["slice"] for r in rows if str(r.get("rule", "")).startswith("too few")],
        gallery_consistent=consistent,
    )


__all__ = ["GateRow", "Verdicts", "decide", "gate_settings", "gate_rows", "slice_rows", "slice_recalls"]
