"""Class metrics from the confusion matrix, the gate's configuration, and strict JSON."""

import json

import numpy as np
import pytest

from components.eval_summary import class_metrics_from_confusion, confusion_matrix_from_plot, gate_settings, strict_json
from components.evaluation import (
    DEFECT_RECALL,
    DEFECT_RECALL_GATE,
    DEFECT_RECALL_LOWER_BOUND,
    FALSE_ALARM_RATE,
    GateConfig,
    build_eval_config,
    gated_slices,
)


def test_class_metrics_are_the_textbook_formulas():
    # rows: truth, columns: prediction
    matrix = np.array([[8, 2, 0], [1, 6, 3], [0, 0, 10]])
    metrics = class_metrics_from_confusion(matrix, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(24 / 30)
    a, b, c = (metrics["per_class"][k] for k in "abc")
    assert a["precision"] == pytest.approx(8 / 9) and a["recall"] == pytest.approx(0.8) and a["support"] == 10
    assert b["precision"] == pytest.approx(0.75) and b["recall"] == pytest.approx(0.6)
    assert c["precision"] == pytest.approx(10 / 13) and c["recall"] == 1.0
    f1 = [2 * p * r / (p + r) for p, r in [(8 / 9, 0.8), (0.75, 0.6), (10 / 13, 1.0)]]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))


def test_absent_classes_do_not_count_in_macro_f1():
    metrics = class_metrics_from_confusion(np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]]), ["a", "b", "c"])
    assert metrics["macro_f1"] == 1.0 and metrics["per_class"]["c"]["support"] == 0


def test_confusion_matrix_from_tfma_plot():
    plot = {
        "multiClassConfusionMatrixAtThresholds": {
            "matrices": [
                {
                    "threshold": 0.0,
                    "entries": [
                        {"actualClassId": 0, "predictedClassId": 0, "numWeightedExamples": 7.0},
                        {"actualClassId": 1, "predictedClassId": 0, "numWeightedExamples": 2.0},
                        {"actualClassId": 1, "predictedClassId": 1, "numWeightedExamples": 5.0},
                    ],
                }
            ]
        }
    }
    np.testing.assert_array_equal(confusion_matrix_from_plot(plot, 2), [[7, 0], [2, 5]])


def _metric(config, name):
    return next(
        m for spec in config.metrics_specs for m in spec.metrics if json.loads(m.config or "{}").get("name") == name
    )


def _gated(metric):
    (per_slice,) = metric.per_slice_thresholds
    return [dict(s.feature_values) or list(s.feature_keys) for s in per_slice.slicing_specs], per_slice


def test_eval_config_gates_overall_on_the_lower_bound_and_every_class_and_slice_on_the_gate_value():
    gate = GateConfig(class_names=("Center", "Scratch", "none"), min_defect_recall=0.99, max_false_alarm_rate=0.1)
    config = build_eval_config(gate)

    bound = _metric(config, DEFECT_RECALL_LOWER_BOUND)
    assert (bound.class_name, bound.module) == ("DefectRecallBounds", "components.recall_bounds")
    assert json.loads(bound.config)["confidence"] == 0.95
    slices, per_slice = _gated(bound)
    assert slices == [[]]  # overall only
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.99

    judged = _metric(config, DEFECT_RECALL_GATE)
    assert (judged.class_name, judged.module) == ("DefectRecallGate", "components.recall_bounds")
    assert json.loads(judged.config) == {"name": DEFECT_RECALL_GATE, "min_support": 30, "too_few": "report"}
    slices, per_slice = _gated(judged)
    assert slices == [{"label": "Center"}, {"label": "Scratch"}, ["stage"], ["size_bucket"], ["aspect_bucket"]]
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.99
    assert per_slice.threshold.change_threshold.absolute.value == -gate.recall_tolerance

    # The point estimate stays (stock Recall) and is gated only against the baseline, overall.
    point = _metric(config, DEFECT_RECALL)
    assert point.class_name == "Recall"
    slices, per_slice = _gated(point)
    assert slices == [[]] and not per_slice.threshold.HasField("value_threshold")
    assert per_slice.threshold.change_threshold.absolute.value == -gate.recall_tolerance

    false_alarms = _metric(config, FALSE_ALARM_RATE)
    assert false_alarms.per_slice_thresholds[0].threshold.value_threshold.upper_bound.value == 0.1
    # Every gated slice must also be computed, or TFMA fails validation as "missing slice".
    computed = {s.SerializeToString() for s in config.slicing_specs}
    for metric in (bound, judged, point, false_alarms):
        for per_slice in metric.per_slice_thresholds:
            assert all(s.SerializeToString() in computed for s in per_slice.slicing_specs)


def test_gate_settings_reach_the_metric_configs_and_are_read_back():
    gate = GateConfig(
        class_names=("a", "none"),
        min_defect_recall=0.95,
        confidence=0.9,
        min_slice_support=50,
        too_few="refuse",
        slice_features=(),
    )
    config = build_eval_config(gate)
    assert json.loads(_metric(config, DEFECT_RECALL_GATE).config)["too_few"] == "refuse"
    settings = gate_settings(config)
    assert {
        k: settings[k]
        for k in ("min_defect_recall", "confidence", "min_slice_support", "too_few", "max_false_alarm_rate")
    } == {
        "min_defect_recall": 0.95,
        "confidence": 0.9,
        "min_slice_support": 50,
        "too_few": "refuse",
        "max_false_alarm_rate": 0.1,
    }
    assert [dict(s.feature_values) for s in settings["gated_slicing_specs"]] == [{"label": "a"}]


def test_gate_config_errors():
    with pytest.raises(ValueError, match="normal_class 'none' must be one of class_names"):
        GateConfig(class_names=("a", "b"))
    with pytest.raises(ValueError, match=r"min_defect_recall must be in \[0, 1\]"):
        GateConfig(class_names=("a", "none"), min_defect_recall=1.5)
    with pytest.raises(ValueError, match="too_few must be one of"):
        GateConfig(class_names=("a", "none"), too_few="pass")
    with pytest.raises(ValueError, match="min_slice_support must be a whole number >= 1"):
        GateConfig(class_names=("a", "none"), min_slice_support=0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        GateConfig(class_names=("a", "none"), confidence=1.0)


def test_default_gate_slices_by_stage_map_size_and_aspect():
    assert GateConfig(class_names=("a", "none")).slice_features == ("stage", "size_bucket", "aspect_bucket")


def test_strict_json_replaces_nan_and_infinities():
    value = {"a": float("nan"), "b": [1.0, float("inf"), np.float32(2.5)], "c": {"d": np.int64(3), "e": "x"}}
    clean = strict_json(value)
    assert clean == {"a": None, "b": [1.0, None, 2.5], "c": {"d": 3, "e": "x"}}
    json.dumps(clean, allow_nan=False)


def test_pattern_metrics_come_from_the_binarized_counts_and_exact_match_is_the_accuracy():
    from components.eval_summary import pattern_metrics_from_counts

    values = {
        "probabilities/true_positives/class_0": 18.0,
        "probabilities/false_negatives/class_0": 2.0,
        "probabilities/false_positives/class_0": 6.0,
        "probabilities/true_positives/class_1": 0.0,
        "probabilities/false_negatives/class_1": 0.0,
        "probabilities/false_positives/class_1": 3.0,
        "patterns_present/exact_match": 0.85,
    }
    metrics = pattern_metrics_from_counts(values, ["Center", "Scratch"])
    center = metrics["per_class"]["Center"]
    assert center == pytest.approx({"precision": 0.75, "recall": 0.9, "f1": 2 * 0.75 * 0.9 / 1.65, "support": 20})
    assert metrics["per_class"]["Scratch"]["support"] == 0
    assert metrics["macro_f1"] == pytest.approx(center["f1"])  # a pattern absent from the split does not count
    assert metrics["accuracy"] == 0.85


def test_multilabel_eval_config_binarizes_the_patterns_and_scores_the_exact_match():
    gate = GateConfig(class_names=("Center", "Center+Loc", "Loc", "none"), patterns=("Center", "Loc"))
    config = build_eval_config(gate)
    labels = dict(config.model_specs[0].label_keys)
    assert labels == {"probabilities": "patterns_xf", "defect_score": "is_defect_xf", "patterns_present": "patterns_xf"}
    binarized = [s for s in config.metrics_specs if s.binarize.class_ids.values]
    assert len(binarized) == 1 and list(binarized[0].binarize.class_ids.values) == [0, 1]
    assert {m.class_name for m in binarized[0].metrics} == {"TruePositives", "FalseNegatives", "FalsePositives"}
    assert any(m.class_name == "ExactMatch" for s in config.metrics_specs for m in s.metrics)
    # The defect gate is the single-label one: every label value, mixed ones included, is a gated class slice.
    gated = {dict(s.feature_values).get("label") for s in gated_slices(gate)}
    assert {"Center", "Center+Loc", "Loc"} <= gated and "none" not in gated


def test_classes_are_listed_in_the_configured_order_with_the_matrix_permuted_alike():
    from components.eval_summary import display_order, reorder_matrix

    model_order = ["none", "Scratch", "Center"]  # Transform's vocabulary: by frequency
    positions = display_order(model_order, ["Center", "Scratch", "none"])
    assert [model_order[i] for i in positions] == ["Center", "Scratch", "none"]
    matrix = [[10, 1, 0], [2, 5, 0], [0, 1, 7]]  # rows: true none, Scratch, Center
    assert reorder_matrix(matrix, positions) == [[7, 1, 0], [0, 5, 2], [0, 1, 10]]
    assert display_order(model_order, None) == [0, 1, 2]
    assert display_order(model_order, ["Center", "Gone"]) == [2, 0, 1]  # unknown names ignored, the rest kept
