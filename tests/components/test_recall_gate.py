"""The recall gate through real TFMA: exact bounds, the lower-bound gate, minimum support, and the summary.

TFMA runs model-less (``run_model_analysis`` on tf.Examples that carry their predictions), with the
EvalConfig ``build_eval_config`` writes, its model spec swapped for one that reads the predictions
and labels from the examples. The blessing is TFMA's own validator's (``load_validation_result``).
"""

import json


import numpy as np
import pytest

tfma = pytest.importorskip("tensorflow_model_analysis")

import tensorflow as tf  # noqa: E402

from components import features  # noqa: E402
from components import recall_bounds as rb  # noqa: E402
from components.config import DEFECT_SCORE, IS_DEFECT_XF, LABEL_XF, PROBABILITIES  # noqa: E402
from components.eval_summary import evaluation_lines, summarize_evaluation  # noqa: E402
from components.evaluation import GateConfig, build_eval_config  # noqa: E402

CLASSES = ("Center", "Scratch", "none")
NORMAL = "none"


def _example(label, flagged, stage="sort", height=30, width=30):
    class_id = CLASSES.index(label)
    probabilities = np.full(len(CLASSES), 0.05, np.float32)
    probabilities[class_id] = 0.9
    feature = {
        features.LABEL_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
        features.STAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[stage.encode()])),
        features.SIZE_BUCKET_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[features.size_bucket(height, width).encode()])
        ),
        features.ASPECT_BUCKET_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[features.aspect_bucket(height, width).encode()])
        ),
        LABEL_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[class_id])),
        IS_DEFECT_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label != NORMAL)])),
        DEFECT_SCORE: tf.train.Feature(float_list=tf.train.FloatList(value=[0.9 if flagged else 0.1])),
        PROBABILITIES: tf.train.Feature(float_list=tf.train.FloatList(value=probabilities.tolist())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _wafers(label, count, misses=0, **shape):
    """``count`` wafers of ``label``: defective ones flagged but for ``misses``; normal ones flagged
    ``misses`` times."""
    flag = label != NORMAL
    return [_example(label, flag if i >= misses else not flag, **shape) for i in range(count)]


def _modelless(config):
    """The gate's EvalConfig reading predictions and labels from the examples, as a first run (no baseline)."""
    config.model_specs[0].CopyFrom(
        tfma.ModelSpec(
            label_keys={PROBABILITIES: LABEL_XF, DEFECT_SCORE: IS_DEFECT_XF},
            prediction_keys={PROBABILITIES: PROBABILITIES, DEFECT_SCORE: DEFECT_SCORE},
        )
    )
    # The Evaluator drops change thresholds when there is no baseline (rubber stamp); do the same.
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                per_slice.threshold.ClearField("change_threshold")
            kept = [p for p in metric.per_slice_thresholds if p.threshold.HasField("value_threshold")]
            del metric.per_slice_thresholds[:]
            metric.per_slice_thresholds.extend(kept)
    return config


def _evaluate(tmp_path, examples, gate):
    data = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(data) as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    output = str(tmp_path / "evaluation")
    tfma.run_model_analysis(eval_config=_modelless(build_eval_config(gate)), data_location=data, output_path=output)
    return output, tfma.load_validation_result(output)


def _gate(**changes):
    return GateConfig(class_names=CLASSES, normal_class=NORMAL, max_false_alarm_rate=0.1, **changes)


def _failed(validation):
    """{(slice name, metric name)} of every failure TFMA's validator recorded."""
    found = set()
    for per_slice in validation.metric_validations_per_slice:
        key = tfma.slicer.deserialize_slice_key(per_slice.slice_key)
        name = ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in key) or "overall"
        found |= {(name, failure.metric_key.name) for failure in per_slice.failures}
    return found


def _by_slice(summary):
    return {entry["slice"]: entry for entry in summary["gated_slices"]}


def test_one_miss_in_200_is_refused_on_the_lower_bound_though_its_point_recall_passes(tmp_path):
    examples = _wafers("Center", 100, misses=1) + _wafers("Scratch", 100) + _wafers(NORMAL, 100, misses=2)
    output, validation = _evaluate(tmp_path, examples, _gate())
    assert not validation.validation_ok
    # The only failure: the overall lower bound. Every class / feature slice passes on its point estimate.
    assert _failed(validation) == {("overall", rb.DEFECT_RECALL_LOWER_BOUND)}

    summary = summarize_evaluation(output, CLASSES)
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN anywhere
    assert summary["defect_recall"] == pytest.approx(199 / 200)  # the stock Recall: a direct count
    overall = summary["overall"]
    assert (overall["support"], overall["misses"], overall["rule"], overall["verdict"]) == (
        200,
        1,
        "lower bound",
        "fail",
    )
    assert overall["defect_recall"] == pytest.approx(0.995) and overall["lower_bound"] < 0.99
    assert summary["defect_recall_lower_bound"] == pytest.approx(overall["lower_bound"])
    assert overall["defects_needed"] == 473  # with one miss, 473 defective wafers reach 0.99
    assert overall["normal_support"] == 100 and overall["false_alarms"] == 2
    assert overall["false_alarm_rate"] == pytest.approx(0.02) and overall["false_alarm_verdict"] == "pass"
    low, high = overall["false_alarm_interval"]
    assert low < 0.02 < high
    slices = _by_slice(summary)
    center = slices["label=Center"]
    assert (center["support"], center["misses"], center["rule"], center["verdict"]) == (
        100,
        1,
        "point estimate (n >= 30)",
        "pass",
    )
    assert center["interval"][0] < 0.99 < center["interval"][1]
    assert set(slices) == {
        "overall",
        "label=Center",
        "label=Scratch",
        "stage=sort",
        "size_bucket=25-50",
        "aspect_bucket=square",
    }
    assert "label=none" not in slices and summary["too_few_to_judge"] == []
    assert summary["validation_ok"] is False
    assert any(f.startswith("overall: defect_recall_lower_bound") for f in summary["validation_failures"])


def test_two_misses_in_100_fail_the_lower_bound_and_the_class_point_estimate(tmp_path):
    examples = _wafers("Center", 60, misses=2) + _wafers("Scratch", 40) + _wafers(NORMAL, 50)
    _, validation = _evaluate(tmp_path, examples, _gate())
    assert not validation.validation_ok
    failed = _failed(validation)
    assert ("overall", rb.DEFECT_RECALL_LOWER_BOUND) in failed
    assert ("label=Center", rb.DEFECT_RECALL_GATE) in failed  # 58 / 60 < 0.99 with n >= 30
    assert ("label=Scratch", rb.DEFECT_RECALL_GATE) not in failed
    assert ("stage=sort", rb.DEFECT_RECALL_GATE) in failed  # 98 / 100


def _enough_and_a_small_slice():
    """300 defective wafers, no miss (lower bound 0.05 ** (1 / 300) > 0.99), 5 of them in a big-map slice."""
    return (
        _wafers("Center", 150)
        + _wafers("Scratch", 145)
        + _wafers("Scratch", 5, height=120, width=110)
        + _wafers(NORMAL, 60, misses=3)
    )


def test_a_slice_below_the_minimum_support_is_reported_not_passed(tmp_path):
    output, validation = _evaluate(tmp_path, _enough_and_a_small_slice(), _gate())
    assert validation.validation_ok, _failed(validation)
    summary = summarize_evaluation(output, CLASSES)
    json.dumps(summary, allow_nan=False)
    assert summary["overall"]["lower_bound"] == pytest.approx(0.05 ** (1 / 300))
    assert summary["overall"]["verdict"] == "pass"
    small = _by_slice(summary)["size_bucket=>=100"]
    assert (small["support"], small["rule"], small["verdict"]) == (5, "too few to judge (n < 30)", "too few to judge")
    assert small["gate_value"] == 1.0 and small["defect_recall"] == 1.0
    assert summary["too_few_to_judge"] == ["size_bucket=>=100"]
    assert summary["gate"]["min_slice_support"] == 30 and summary["gate"]["too_few"] == "report"
    assert _by_slice(summary)["size_bucket=25-50"]["verdict"] == "pass"

    # The terminal and the run report say so too.
    lines = "\n".join(evaluation_lines(summary))
    assert "on 300 defective wafers (0 missed); 95% lower bound 0.9901" in lines
    assert "too few to judge (n < 30 defective wafers; not gated): size_bucket=>=100 (n=5" in lines
    from components.report.data import GatePolicy, ReportData
    from components.report.render import render_report

    page = render_report(
        ReportData(class_names=list(CLASSES), normal_class=NORMAL, evaluation=summary, gate=GatePolicy(), blessed=True),
        str(tmp_path / "report"),
        embed_images=False,
    )
    text = open(page, encoding="utf-8").read()
    assert '<tr data-slice="size_bucket=&gt;=100" class="too-few">' in text
    assert 'id="too-few" class="few" data-slices="size_bucket=&gt;=100"' in text
    assert "<td>too few to judge (n &lt; 30)</td>" in text and "<td>point estimate (n &gt;= 30)</td>" in text


def test_a_slice_below_the_minimum_support_refuses_under_refuse(tmp_path):
    output, validation = _evaluate(tmp_path, _enough_and_a_small_slice(), _gate(too_few="refuse"))
    assert not validation.validation_ok
    assert _failed(validation) == {("size_bucket=>=100", rb.DEFECT_RECALL_GATE)}
    summary = summarize_evaluation(output, CLASSES)
    small = _by_slice(summary)["size_bucket=>=100"]
    assert (small["rule"], small["verdict"], small["gate_value"]) == ("too few to judge (n < 30)", "fail", 0.0)
    assert small["evaluator_failures"] == [rb.DEFECT_RECALL_GATE]
    assert summary["too_few_to_judge"] == ["size_bucket=>=100"]
    assert summary["overall"]["verdict"] == "pass" and summary["validation_ok"] is False
    assert "refuses the blessing" in "\n".join(evaluation_lines(summary))


def test_metric_module_reexports_the_sizing_helper_and_names_itself():
    assert rb.defects_needed(0.99, 0.95, 0) == 299 and rb.MODULE == rb.__name__ == "components.recall_bounds"
    config = rb.metric_config(rb.DefectRecallGate, min_support=30, too_few="report")
    metric = tfma.metrics.metric_specs.metric_instance(config)  # as a Beam worker builds it: by module and class
    assert isinstance(metric, rb.DefectRecallGate) and metric.name == rb.DEFECT_RECALL_GATE
    with pytest.raises(ValueError, match="too_few must be one of"):
        rb.DefectRecallGate(too_few="pass")
