"""The whole pipeline through LocalDagRunner on tiny data: artefacts, blessing, push, serving, the gate.

The session fixture ``tiny_pipeline_run`` (tests/conftest.py) runs it once; the gate test re-runs
the same pipeline with an undertrained model on a copy of that run's output root, in any order.
"""

import glob
import os
import re
import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from components.eval_summary import summarize_evaluation
from components.operating_point import MIN_THRESHOLD
from pipeline.output_lock import LOCK_FILE
from pipeline.results import read_results
from pipeline.run_local import EXIT_REFUSED, run
from spanet.data.generator import generate_wafer_maps
from spanet.data.imageio import encode_png

pytestmark = pytest.mark.slow


def _latest_version(serving_dir):
    versions = sorted(int(v) for v in os.listdir(serving_dir) if v.isdigit())
    assert versions, f"no version under {serving_dir}"
    return os.path.join(serving_dir, str(versions[-1]))


def test_tiny_run_is_blessed_and_pushed_in_tf_serving_layout(tiny_pipeline_run):
    config, results = tiny_pipeline_run.config, tiny_pipeline_run.results
    assert tiny_pipeline_run.exit_code == 0
    assert results.blessed is True and results.pushed is True
    version = _latest_version(config.serving_dir)
    assert os.path.dirname(results.pushed_path.rstrip("/")) == os.path.abspath(
        config.serving_dir
    ) or results.pushed_path.rstrip("/").startswith(config.serving_dir)
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    assert os.path.isdir(os.path.join(version, "variables"))
    assert os.path.isfile(os.path.join(version, "assets.extra", "spanet_operating_point.json"))
    # The model card beside the pushed model: the gate's decision and the test split's numbers.
    import json

    def refuse(value):
        raise ValueError(f"not strict JSON: {value}")

    # The report's numbers are strict JSON (no bare NaN) ...
    report_json = os.path.join(os.path.dirname(results.report_path), "report.json")
    json.loads(open(report_json, encoding="utf-8").read(), parse_constant=refuse)
    summary = json.loads(
        open(os.path.join(config.output_root, "evaluation_summary.json"), encoding="utf-8").read(),
        parse_constant=refuse,
    )
    # ... and the model card beside the pushed model states the gate's decision and the test split's numbers.
    card = open(os.path.join(version, "assets.extra", "model_card.md"), encoding="utf-8").read()
    assert "**Blessed** by the gate" in card and f"| defect recall | {summary['defect_recall']:.4f} |" in card
    assert f"Model card: {os.path.join(version, 'assets.extra', 'model_card.md')}" in tiny_pipeline_run.terminal


def test_the_terminal_shows_each_component_and_the_epochs_and_the_log_file_keeps_the_rest(tiny_pipeline_run):
    terminal = tiny_pipeline_run.terminal
    for noise in ("Traceback", "Exception ignored", "WARNING", "Instructions for updating"):
        assert noise not in terminal, terminal
    components = (
        "ClassSchemaGen",
        "WaferExampleGen",
        "StatisticsGen",
        "ExampleValidator",
        "SchemaAnomalyGate",
        "Transform",
        "Trainer",
        "Evaluator",
        "EvaluationReporter",
        "Pusher",
    )
    for name in components:
        assert re.search(rf"^\[\d+/\d+\] {name} (done|cached) in \d+ s$", terminal, re.MULTILINE), (name, terminal)
    epochs = tiny_pipeline_run.results.training_summary["epochs_run"]
    assert len(re.findall(r"^Trainer: epoch \d+/\d+: loss ", terminal, re.MULTILINE)) == epochs
    assert "left (at most)" in terminal and "Blessed: True" in terminal
    # The per-class lines follow the configured class order, not Transform's vocabulary (by frequency).
    listed = re.findall(r"^\s+(\S+): precision ", terminal, re.MULTILINE)
    assert listed == list(tiny_pipeline_run.config.class_names), listed
    log_path = re.search(r"^Log: (\S+)", terminal, re.MULTILINE).group(1)
    log = open(log_path, encoding="utf-8").read()
    assert "Component Trainer is running." in log  # TFX's INFO logging, kept in the file


def test_artefacts_of_every_component(tiny_pipeline_run):
    root = tiny_pipeline_run.config.pipeline_root
    for split in ("train", "eval", "test"):
        assert glob.glob(os.path.join(root, "WaferExampleGen", "examples", "*", f"Split-{split}", "*.gz"))
    for path in (
        "StatisticsGen/statistics",
        "ExampleValidator/anomalies",
        "Transform/transform_graph",
        "Trainer/model",
        "Trainer/model_run",
        "Evaluator/evaluation",
        "Evaluator/blessing",
    ):
        assert glob.glob(os.path.join(root, path, "*")), path
    results = tiny_pipeline_run.results
    summary = results.training_summary
    assert summary["class_names"] and summary["operating_point"]["threshold"] >= MIN_THRESHOLD
    assert os.path.isfile(os.path.join(results.trainer_run_dir, "history.csv"))
    assert glob.glob(os.path.join(results.trainer_run_dir, "**", "events.out.tfevents.*"), recursive=True)


def test_pushed_model_answers_a_png_with_a_class_name(pushed_model_dir, tiny_class_mix, tiny_maps):
    model = tf.saved_model.load(_latest_version(str(pushed_model_dir)))
    records = tiny_maps(6, 11)
    pngs = [encode_png(r.image) for r in records]
    out = model.signatures["serving_default"](images=tf.constant(pngs))
    names = [n.decode() for n in out["class_name"].numpy()]
    assert set(names) <= set(tiny_class_mix)
    assert names == [r.label for r in records]
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    flags = out["defective"].numpy()
    assert list(flags) == [r.label != "none" for r in records]
    # The score TFMA's Recall reads crosses 0.5 exactly where the served flag turns on.
    np.testing.assert_array_equal(out["defect_score"].numpy() > 0.5, flags)
    assert float(model.normal_threshold.numpy()) >= MIN_THRESHOLD


def test_evaluator_defect_recall_equals_a_direct_count(tiny_pipeline_run):
    config, results = tiny_pipeline_run.config, tiny_pipeline_run.results
    model = tf.saved_model.load(_latest_version(config.serving_dir))
    files = glob.glob(os.path.join(config.pipeline_root, "WaferExampleGen", "examples", "*", "Split-test", "*.gz"))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    labels = [tf.train.Example.FromString(s).features.feature["label"].bytes_list.value[0].decode() for s in serialized]
    scores = model.signatures["serving_examples"](examples=tf.constant(serialized))["defect_score"].numpy()
    is_defect = np.array([label != "none" for label in labels])
    direct = float((scores[is_defect] > 0.5).mean())
    evaluation = summarize_evaluation(results.evaluation_uri, results.training_summary["class_names"])
    assert evaluation["defect_recall"] == pytest.approx(direct, abs=1e-6)
    # The tiny run's gate is configured for its size (tests/conftest.py): its lower bound must clear that.
    gate = config.gate_config
    assert evaluation["validation_ok"] and evaluation["defect_recall_lower_bound"] >= gate.min_defect_recall
    assert evaluation["defect_recall"] >= evaluation["defect_recall_lower_bound"]
    assert sum(m["support"] for m in evaluation["per_class"].values()) == len(serialized)


def test_inputs_unlike_every_class_are_unknown_and_flagged(pushed_model_dir, tiny_maps, tiny_pipeline_run):
    from spanet.data.probes import unknown_probes

    model = tf.saved_model.load(_latest_version(str(pushed_model_dir)))
    serve = model.signatures["serving_default"]
    for name, images in unknown_probes().items():
        out = serve(images=tf.constant(images))
        assert out["unknown"].numpy().all(), (
            f"{name}: familiarity {out['familiarity'].numpy()} not below {model.familiarity_threshold.numpy()}"
        )
        assert out["defective"].numpy().all(), name  # sent to review, never a confident normal
        assert {n.decode() for n in out["class_name"].numpy()} == {"unknown"}, name
        assert (out["defect_score"].numpy() > 0.5).all(), name  # the Evaluator counts what is served
    good = tiny_maps(30, 12)
    out = serve(images=tf.constant([encode_png(r.image) for r in good]))
    assert out["unknown"].numpy().mean() <= 0.1
    # The threshold was chosen on the eval split to reject at most 1 % of its normal wafers.
    summary = tiny_pipeline_run.results.training_summary
    assert summary["eval_unknown_rate_normal"] <= 0.01
    assert summary["familiarity_threshold"] == pytest.approx(float(model.familiarity_threshold.numpy()), abs=1e-6)


def _png_folder_with_unknown_label(path, count=40):
    """A PNG data set in the users' layout in which three wafers carry a label outside the schema."""
    from spanet.data.writers import write_dataset

    records = generate_wafer_maps(count, seed=5, class_mix={"Center": 1.0, "none": 1.0}, lot_size=5)
    write_dataset(records, str(path), "png")
    manifest = path / "manifest.csv"
    lines = manifest.read_text().splitlines()
    for i in (1, 2, 3):
        fields = lines[i].split(",")
        fields[1] = "Mystery"
        lines[i] = ",".join(fields)
    manifest.write_text("\n".join(lines) + "\n")
    return path


def test_schema_anomaly_stops_the_run_before_training(tmp_path, capsys, tiny_config):
    data = _png_folder_with_unknown_label(tmp_path / "data")
    config = tiny_config(tmp_path / "out").with_updates(
        data_path=str(data), data_format="png", class_names=("Center", "none")
    )
    assert run(config) == 2
    message = capsys.readouterr().err
    assert "violates the schema" in message and "'label'" in message and "Mystery" in message
    assert "the configured classes are ['Center', 'none']" in message
    assert "SchemaDiff.pb" in message
    assert not glob.glob(os.path.join(config.pipeline_root, "Transform", "*", "*"))
    assert not glob.glob(os.path.join(config.pipeline_root, "Trainer", "*", "*"))


@pytest.fixture
def copied_tiny_run_config(tiny_pipeline_run, tmp_path):
    """The shared run's configuration on a copy of its output root (metadata store, pipeline root,
    serving folder) under ``tmp_path``: a test that runs the pipeline again writes only into the copy.

    The copy's ML Metadata rows still name the shared run's artifacts by their absolute URIs, which
    stay in place. The data is read where the shared run read it: the ExampleGen's data path is part
    of its cache key, and the gate test needs the cached examples (and the cached first model).
    """
    shared = tiny_pipeline_run.config
    root = tmp_path / "tiny_run_copy"
    top = os.path.abspath(shared.output_root)

    def skipped(folder, names):  # the lock (another run's), and the data folder at the top (read in place)
        return [n for n in names if n == LOCK_FILE or (n == "data" and os.path.abspath(folder) == top)]

    shutil.copytree(shared.output_root, root, ignore=skipped)
    config = shared.with_updates(
        output_root=str(root), data_path=shared.resolved_data_path, data_format=shared.resolved_data_format
    )
    assert config.resolved_data_path == shared.resolved_data_path
    assert config.resolved_data_format == shared.resolved_data_format
    assert (config.metadata_path, config.pipeline_root, config.serving_dir) == (
        str(root / "metadata" / "metadata.sqlite"),
        str(root / "pipeline"),
        str(root / "serving" / shared.model_name),
    )
    return config


def test_gate_refuses_an_undertrained_model_and_pushes_nothing(tiny_pipeline_run, copied_tiny_run_config, tmp_path):
    """The shared run's pipeline again (on a copy of its store), but the Trainer stops after one epoch
    at a negligible learning rate."""
    shared_versions = sorted(os.listdir(tiny_pipeline_run.config.serving_dir))
    config = copied_tiny_run_config
    versions_before = sorted(os.listdir(config.serving_dir))
    assert versions_before == shared_versions
    weak = config.with_updates(
        training=replace(config.training, epochs=1, learning_rate=1e-6, final_learning_rate=1e-7)
    )
    assert run(weak) == EXIT_REFUSED  # finished, but nothing pushed: not a success for scripts
    results = read_results(weak.metadata_path)
    assert results.blessed is False and results.pushed is False
    assert results.model_uri.startswith(config.pipeline_root)  # the weak run wrote into the copy
    assert sorted(os.listdir(config.serving_dir)) == versions_before
    evaluation = summarize_evaluation(results.evaluation_uri, results.training_summary["class_names"])
    assert not evaluation["validation_ok"] and evaluation["validation_failures"]

    # Rerun the first configuration (pushing elsewhere, so the copied serving folder keeps its one
    # version): the Trainer is cached, and the run reports that cached model and its own evaluation,
    # not the newer model and evaluation the weak run left in the same store.
    first = tiny_pipeline_run.results
    started_ms = int(time.time() * 1000)
    assert run(config.with_updates(serving_base_dir=str(tmp_path / "serving"))) == 0
    again = read_results(config.metadata_path, since_ms=started_ms)
    assert again.model_uri == first.model_uri != results.model_uri
    assert again.trainer_run_dir == first.trainer_run_dir != results.trainer_run_dir
    assert again.blessed is True and again.pushed and again.pushed_path.startswith(str(tmp_path / "serving"))
    assert again.evaluation_uri not in (
        first.evaluation_uri,
        results.evaluation_uri,
    )  # the Evaluator ran: now with a baseline
    assert sorted(os.listdir(tiny_pipeline_run.config.serving_dir)) == shared_versions  # the shared run untouched
