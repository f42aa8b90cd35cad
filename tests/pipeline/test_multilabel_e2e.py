"""Multi-label mode end to end: a MixedWM38-style npz whose maps carry Center, Edge-Ring, both, or
neither, trained with ``--mixed multilabel`` (one sigmoid output per pattern, multi-label Circle
Loss), gated, pushed; the served model answers pattern sets, and the Evaluator reports per-pattern
recall and the exact-match rate."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

PATTERNS = ("Center", "Edge-Ring")
GRID = 40


def mixed_maps(count: int, seed: int, tiny_maps):
    """``count`` maps of one 40 x 40 grid: Center, Edge-Ring, none, and Center+Edge-Ring made by
    failing every die that fails on a Center map or on an Edge-Ring map of the same lot."""
    from spanet.data.classes import mixed_label
    from spanet.data.records import WaferRecord

    mix = {"Center": 1.0, "Edge-Ring": 1.0, "none": 1.0}
    maps = tiny_maps(count, seed, class_mix=mix, min_size=GRID, max_size=GRID)
    by_label = {label: [m for m in maps if m.label == label] for label in mix}
    mixed = []
    for center, ring in zip(by_label["Center"][::2], by_label["Edge-Ring"][::2]):
        mixed.append(
            WaferRecord(
                image=np.maximum(center.image, ring.image),
                label=mixed_label(PATTERNS),
                lot_id=center.lot_id,
                wafer_id=f"{center.wafer_id}m",
                stage=center.stage,
                source=center.source,
                ref=f"{center.ref}+{ring.ref}",
                original_shape=center.original_shape,
            )
        )
    return maps + mixed


def encoded(record) -> bytes:
    from spanet.data.imageio import encode_png

    return encode_png(record.image)


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory, tiny_config, tiny_maps):
    from components.evaluation import GateConfig
    from pipeline.results import read_results
    from pipeline.run_local import run
    from spanet.data.formats.mixedwm38 import write_mixedwm38

    out = tmp_path_factory.mktemp("multilabel")
    data = str(out / "mixed.npz")
    write_mixedwm38(mixed_maps(360, 5, tiny_maps), data)
    config = tiny_config(out / "run", data_path=data, data_format="npz", class_names=None, mixed="multilabel")
    config = config.with_updates(
        # Test configuration, not the product's gate (see tests/conftest.py): about 60 defective test
        # maps cannot show 0.99; a lower bound of 0.8 allows 3 misses, and a model that learnt nothing
        # fails it or the false-alarm limit.
        gate=GateConfig(min_defect_recall=0.8, max_false_alarm_rate=0.2, min_slice_support=10),
    )
    code = run(config)
    return {"code": code, "config": config, "results": read_results(config.metadata_path)}


def _serving(run):
    base = run["config"].serving_dir
    version = max((v for v in os.listdir(base) if v.isdigit()), key=int)
    return tf.saved_model.load(os.path.join(base, version)).signatures["serving_default"]


def test_multilabel_npz_is_blessed_with_one_output_per_pattern(multilabel_run):
    results = multilabel_run["results"]
    assert multilabel_run["code"] == 0, results
    assert results.blessed and results.pushed
    summary = results.training_summary
    assert summary["multilabel"] is True
    assert summary["class_names"] == list(PATTERNS)  # the output columns
    assert sorted(summary["label_names"]) == sorted(["Center", "Center+Edge-Ring", "Edge-Ring", "none"])


def test_evaluator_reports_per_pattern_recall_and_exact_match(multilabel_run):
    from components.eval_summary import summarize_evaluation

    evaluation = summarize_evaluation(multilabel_run["results"].evaluation_uri, list(PATTERNS))
    assert evaluation["multilabel"] is True
    json.dumps(evaluation, allow_nan=False)
    assert set(evaluation["per_class"]) == set(PATTERNS)
    for name in PATTERNS:
        metrics = evaluation["per_class"][name]
        # Every test map with the pattern counts, mixed ones included: more than its pure maps.
        assert metrics["support"] > 10 and metrics["recall"] >= 0.8, (name, metrics)
    assert 0.7 <= evaluation["accuracy"] <= 1.0  # exact-match rate
    assert evaluation["overall"]["support"] > 0 and evaluation["defect_recall"] >= 0.8


def test_served_model_answers_pattern_sets(multilabel_run, tiny_maps):
    serve = _serving(multilabel_run)
    fresh = mixed_maps(60, 77, tiny_maps)
    out = serve(images=tf.constant([encoded(m) for m in fresh]))
    assert out["probabilities"].shape == (len(fresh), len(PATTERNS))
    assert out["patterns_present"].shape == (len(fresh), len(PATTERNS))
    names = [n.decode() for n in out["class_name"].numpy()]
    truth = [m.label for m in fresh]
    assert set(names) <= {"Center", "Edge-Ring", "Center+Edge-Ring", "none", "unknown"}
    assert np.mean([n == t for n, t in zip(names, truth)]) >= 0.7, list(zip(truth, names))
    present = out["patterns_present"].numpy()
    for name, row in zip(names, present):
        if name != "unknown":  # the name is the set of patterns present
            assert name == ("+".join(p for p, on in zip(PATTERNS, row) if on) or "none")
    flags = out["defective"].numpy()
    mixed = [f for f, t in zip(flags, truth) if "+" in t]
    assert mixed and np.mean(mixed) == 1.0  # a wafer with two patterns is always defective


def test_grpc_client_returns_the_pattern_set_with_a_probability_each(multilabel_run, tiny_maps):
    from spanet.serving.client import ServingClient
    from spanet.serving.config import ClientConfig, ServerConfig
    from spanet.serving.server import LocalServer

    server_config = ServerConfig(
        model_base_path=multilabel_run["config"].serving_dir,
        model_name="spanet",
        host="127.0.0.1",
        port=0,
        rest_port=0,
        poll_interval_s=0.5,
    )
    fresh = mixed_maps(30, 78, tiny_maps)
    with (
        LocalServer(server_config) as server,
        ServingClient(ClientConfig(target=f"127.0.0.1:{server.port}", model_name="spanet", timeout_s=30)) as client,
    ):
        answers = client.predict_images([encoded(m) for m in fresh])
    assert len(answers) == len(fresh)
    for answer in answers:
        assert set(answer.probabilities) == set(PATTERNS)  # one probability per pattern, named
        if not answer.unknown:
            assert answer.patterns is not None
            assert answer.class_name == ("+".join(answer.patterns) or "none")
            assert all(answer.probabilities[p] >= 0.5 for p in answer.patterns)
            assert 0.5 <= answer.confidence <= 1.0
    both = [a for a, m in zip(answers, fresh) if "+" in m.label and not a.unknown]
    assert both and np.mean([set(a.patterns) == set(PATTERNS) for a in both]) >= 0.7
