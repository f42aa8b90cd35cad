"""`spanet drift`: per-wafer features, TFDV drift statistics against a training baseline, and the CLI.

The traffic here is PredictionLog files written by the request logger itself (what `spanet serve
--request-log` writes), holding the PNG wafer maps and a response per map; the served-model path
end to end is tests/serving/test_drift_traffic.py.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from spanet.cli import main
from spanet.data.imageio import encode_png
from spanet.data.writers import write_dataset
from spanet.monitoring.drift import DriftConfig, load_statistics
from spanet.monitoring.features import (
    ASPECT_RATIO,
    DIE_COUNT,
    FAIL_FRACTION,
    MAP_COLS,
    MAP_ROWS,
    image_features,
    prediction_log_rows,
)
from spanet.serving.config import RequestLogConfig
from spanet.serving.request_log import RequestLogger, read_prediction_logs

BASELINE_MAPS = 500
TRAFFIC_MAPS = 200


def double_fail_density(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same map with as many pass dies again turned to fail (twice the failing dies where possible)."""
    out = image.copy()
    flat = out.reshape(-1)
    passing = np.flatnonzero(flat == 128)
    extra = min(len(passing), int(np.count_nonzero(flat == 255)))
    flat[rng.choice(passing, extra, replace=False)] = 255
    return out


def write_traffic_log(folder, records, images=None) -> str:
    """A request log of `records` as the logger writes it: Predict calls of 20 PNGs, answered with the label."""
    logger = RequestLogger(RequestLogConfig(directory=str(folder), sampling_rate=1.0, seed=0))
    images = [r.image for r in records] if images is None else images
    for start in range(0, len(records), 20):
        batch = list(zip(records[start : start + 20], images[start : start + 20]))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "spanet"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([encode_png(im) for _, im in batch], dtype=tf.string))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = "spanet"
        response.model_spec.version.value = 1
        response.model_spec.signature_name = "serving_default"
        response.outputs["class_name"].CopyFrom(tf.make_tensor_proto([r.label.encode() for r, _ in batch]))
        response.outputs["unknown"].CopyFrom(tf.make_tensor_proto([False] * len(batch)))
        assert logger.log_predict(request, response)
    logger.close()
    return str(folder)


@pytest.fixture(scope="module")
def baseline_file(tiny_maps, tmp_path_factory):
    """`spanet drift baseline` of a PNG folder of tiny-problem maps (seed 1), labels standing in for classes."""
    folder = tmp_path_factory.mktemp("drift_train")
    write_dataset(tiny_maps(BASELINE_MAPS, 1), str(folder / "png"), "png")
    out = folder / "baseline.pb"
    assert main(["drift", "baseline", "--data", str(folder / "png"), "--out", str(out)]) == 0
    return out


def test_features_of_a_known_map():
    dies = np.array([[0, 1, 1, 0], [1, 2, 2, 1], [1, 1, 2, 1]], dtype=np.uint8)
    image = np.choose(dies, [0, 128, 255]).astype(np.uint8)
    row = image_features(image)
    assert (row[MAP_ROWS], row[MAP_COLS], row[DIE_COUNT]) == (3, 4, 10)
    assert row[FAIL_FRACTION] == pytest.approx(0.3) and row[ASPECT_RATIO] == pytest.approx(4 / 3)
    photo = image_features(np.full((5, 7), 77, np.uint8))  # not in the wafer-map convention: size only
    assert (photo[MAP_ROWS], photo[MAP_COLS], photo[DIE_COUNT], photo[FAIL_FRACTION]) == (5, 7, None, None)


def test_logged_calls_give_one_row_per_image(tiny_maps, tmp_path):
    records = tiny_maps(25, 5)
    [first, second] = list(read_prediction_logs(write_traffic_log(tmp_path, records)))
    rows = prediction_log_rows(first) + prediction_log_rows(second)
    assert len(rows) == 25
    assert [r["predicted_class"] for r in rows] == [r.label for r in records]
    assert {r["unknown"] for r in rows} == {"false"}
    assert rows[0] == {**image_features(records[0].image), "predicted_class": records[0].label, "unknown": "false"}


def test_baseline_is_a_statistics_list_of_the_features(baseline_file):
    stats = load_statistics(str(baseline_file))
    [dataset] = stats.datasets
    assert dataset.num_examples == BASELINE_MAPS
    names = {".".join(f.path.step) for f in dataset.features}
    assert {"fail_fraction", "die_count", "map_rows", "map_cols", "aspect_ratio", "predicted_class", "unknown"} <= names


def _drift(tmp_path, logs, baseline, capsys, *extra):
    out = tmp_path / "report"
    status = main(["drift", "--logs", logs, "--baseline", str(baseline), "--out", str(out), *extra])
    captured = capsys.readouterr()
    summary = json.loads((out / "drift.json").read_text())
    return status, captured.out.strip().splitlines(), summary


def test_fresh_maps_of_the_training_distribution_are_quiet(tiny_maps, baseline_file, tmp_path, capsys):
    logs = write_traffic_log(tmp_path / "log", tiny_maps(TRAFFIC_MAPS, 2))
    status, lines, summary = _drift(tmp_path, logs, baseline_file, capsys)
    values = {m["feature"]: round(m["value"], 4) for m in summary["measurements"]}
    print("quiet:", values)
    assert status == 0 and lines == [] and summary["drift"] is False, values
    assert summary["traffic_wafers"] == TRAFFIC_MAPS and summary["baseline_wafers"] == BASELINE_MAPS
    assert len(summary["measurements"]) == 7  # every feature measured
    assert (tmp_path / "report" / "anomalies.pbtxt").exists()


def test_doubled_fail_density_is_drift_of_the_fail_fraction(tiny_maps, baseline_file, tmp_path, capsys):
    records = tiny_maps(TRAFFIC_MAPS, 2)
    rng = np.random.default_rng(0)
    logs = write_traffic_log(tmp_path / "log", records, [double_fail_density(r.image, rng) for r in records])
    status, lines, summary = _drift(tmp_path, logs, baseline_file, capsys)
    values = {m["feature"]: round(m["value"], 4) for m in summary["measurements"]}
    print("doubled fail density:", values)
    assert status == 1 and summary["drift"] is True
    assert [a["feature"] for a in summary["anomalies"]] == ["fail_fraction"]
    [line] = lines
    assert line.startswith("DRIFT fail_fraction: jensen_shannon_divergence ") and "> threshold 0.1" in line
    text = (tmp_path / "report" / "anomalies.pbtxt").read_text()
    assert "fail_fraction" in text and "JENSEN_SHANNON_DIVERGENCE" in text


def test_another_grid_size_is_drift_of_the_grid_features(tiny_maps, baseline_file, tmp_path, capsys):
    logs = write_traffic_log(tmp_path / "log", tiny_maps(TRAFFIC_MAPS, 2, min_size=80, max_size=110))
    status, lines, summary = _drift(tmp_path, logs, baseline_file, capsys)
    print("grid 80-110:", {m["feature"]: round(m["value"], 4) for m in summary["measurements"]})
    assert status == 1
    assert {"map_rows", "map_cols", "die_count"} <= {a["feature"] for a in summary["anomalies"]}
    assert "fail_fraction" not in {a["feature"] for a in summary["anomalies"]}


@pytest.mark.parametrize(
    "argv, option",
    [
        (["drift", "--baseline", "B"], "--logs"),
        (["drift", "--logs", "LOGS"], "--baseline"),
        (["drift", "--logs", "missing-folder", "--baseline", "B"], "--logs"),
        (["drift", "--logs", "LOGS", "--baseline", "missing.pb"], "--baseline"),
        (["drift", "--logs", "LOGS", "--baseline", "B", "--jsd-threshold", "2"], "--jsd-threshold"),
        (["drift", "--logs", "LOGS", "--baseline", "B", "--linf-threshold", "x"], "--linf-threshold"),
        (["drift", "--logs", "LOGS", "--baseline", "B", "--min-wafers", "0"], "--min-wafers"),
        (["drift", "--logs", "LOGS", "--baseline", "NOT_STATS"], "--baseline"),
        (["drift", "baseline", "--data", "missing-folder", "--out", "x.pb"], "--data"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(argv, option, baseline_file, tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "junk.pb").write_bytes(b"\xff\xff not a proto")
    paths = {"B": str(baseline_file), "LOGS": str(tmp_path / "logs"), "NOT_STATS": str(tmp_path / "junk.pb")}
    argv = [paths.get(a, str(tmp_path / a) if a.startswith("missing") else a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0], err


def test_too_few_logged_wafers_is_a_failure_not_a_verdict(tiny_maps, baseline_file, tmp_path, capsys):
    logs = write_traffic_log(tmp_path / "log", tiny_maps(10, 3))
    assert main(["drift", "--logs", logs, "--baseline", str(baseline_file)]) == 1
    assert "--min-wafers" in capsys.readouterr().err


def test_thresholds_live_in_one_typed_config():
    config = DriftConfig()
    assert config.threshold("fail_fraction") == 0.1 and config.threshold("aspect_ratio") == 0.3
    assert config.threshold("predicted_class") == 0.15
    assert DriftConfig(overrides={"aspect_ratio": 0.5}).threshold("aspect_ratio") == 0.5
    with pytest.raises(ValueError):
        DriftConfig(numeric_jsd=0)
