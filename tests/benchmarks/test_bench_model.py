"""The model benchmark's arithmetic rates and its check of the x2.0 targets against the published code (the
timing itself runs in the benchmark)."""

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_model")


def _rows(train, infer):
    published = {"name": "published code", "flops": 60e6, "train": 250.0, "infer": 800.0}
    default = {"name": "SP&A-Net, CPU fast paths (fused=True, default)", "flops": 30e6, "train": train, "infer": infer}
    return [published, default]


def test_training_counts_three_passes_of_arithmetic(bench):
    row = {"flops": 30e6, "train": 400.0, "infer": 1000.0}
    assert bench.gflops(row, "train") == pytest.approx(36.0)
    assert bench.gflops(row, "infer") == pytest.approx(30.0)
    assert bench.format_gflops({"flops": 1.0}, "train") == "–"


def test_targets_are_ratios_to_the_published_code_in_the_same_run(bench, capsys):
    bench.print_summary(_rows(train=500.0, infer=1600.0), peak=100.0)
    text = capsys.readouterr().out
    assert "training       x2.000 the published code (target x2.0) -> met" in text
    assert "Keras predict  x2.000 the published code (target x2.0) -> met" in text
    assert "train arithmetic rate 45.0 GFLOP/s = 45.0%" in text
    bench.print_summary(_rows(train=499.0, infer=1200.0), peak=None)
    text = capsys.readouterr().out
    assert "training       x1.996 the published code (target x2.0) -> missed" in text
    assert "Keras predict  x1.500 the published code (target x2.0) -> missed" in text
    assert "arithmetic rate" not in text


def test_the_published_code_and_the_baselines_run_on_tensorflows_threads_and_the_default_on_the_projects(bench):
    from spanet.threads import INTRA_OP_THREADS_ENV, available_cores

    variants = {variant.name.strip(): variant for variant in bench.spanet_variants()}
    published = variants["published code: 1-channel softmax, layer by layer"]
    default = variants["SP&A-Net, CPU fast paths (fused=True, default)"]
    environ = {INTRA_OP_THREADS_ENV: "1", "OTHER": "kept"}
    assert bench.worker_environment(published, environ) == {
        INTRA_OP_THREADS_ENV: str(available_cores()),
        "OTHER": "kept",
    }
    assert bench.worker_environment(default, environ) == environ
    assert environ == {INTRA_OP_THREADS_ENV: "1", "OTHER": "kept"}  # the parent's own is untouched
    assert all(variant.tensorflow_threads for variant in bench.baseline_variants())
    assert not variants["published code on the project's threads (1 per op)"].tensorflow_threads


def test_the_default_row_trains_with_the_trainers_loop(bench):
    from components.config import TrainingConfig

    variants = {variant.name.strip(): variant for variant in bench.spanet_variants()}
    trainers = TrainingConfig().steps_per_execution
    assert variants["SP&A-Net, CPU fast paths (fused=True, default)"].steps_per_execution == trainers
    assert variants["published code: 1-channel softmax, layer by layer"].steps_per_execution == 1
    several = variants["+ 16 steps per execution (one while loop)"]
    assert several.steps_per_execution == 16 and several.train and not several.infer


def test_the_summary_also_compares_with_the_published_codes_fastest_setting(bench, capsys):
    rows = _rows(train=500.0, infer=1600.0)
    rows.insert(1, {"name": "  published code, 16 steps per execution", "flops": 60e6, "train": 260.0})
    bench.print_summary(rows, peak=None)
    text = capsys.readouterr().out
    assert "training       x2.000 the published code (target x2.0) -> met" in text
    assert "x1.923 its fastest setting here (published code, 16 steps per execution)" in text
    # Inference: the first row is the published code's fastest, so no second line.
    assert text.count("its fastest setting") == 1
