"""Test-wide settings: Keras 2 (tf_keras) before TensorFlow loads, quiet logs, offline plots."""

from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # annotations only: the pipeline's modules load TensorFlow
    from pipeline.config import PipelineConfig
    from pipeline.results import RunResults


def pytest_unconfigure(config):
    """Collect TensorFlow's functions while the interpreter is intact: left to shutdown, their
    destructors print a harmless "TypeError: 'NoneType' object is not subscriptable"."""
    import gc

    gc.collect()


#: The tiny, easy problem the end-to-end tests train on: three well-separated classes. Centre (a
#: disc of 0.25-0.45 R) and Random (30-60% fails everywhere) cannot be mistaken for a clean wafer;
#: a thin Edge-Ring can, and one such test wafer in 28 is enough to fail the per-class recall gate.
TINY_CLASSES = ("Center", "Random", "none")


def _tiny_ranges():
    """The generator's ranges narrowed to clearly visible patterns: a test of the pipeline, not of the model."""
    from spanet.data.generator import PatternRanges

    return PatternRanges(
        center_radius=(0.25, 0.45),
        region_fail_prob=(0.6, 0.95),
        background_rate=(0.0, 0.04),
        clustered_share=0.0,
        partial_share=0.0,
    )


def tiny_pipeline_config(output_root, **changes):
    """A PipelineConfig that trains in about a minute on 2 cores and is good enough to be blessed."""
    from components.evaluation import GateConfig
    from pipeline.config import DefaultDataConfig, PipelineConfig

    TINY_RANGES = _tiny_ranges()
    config = PipelineConfig(
        output_root=str(output_root),
        default_data=DefaultDataConfig(
            count=300,
            seed=3,
            lot_size=5,
            class_mix=tuple((name, 1.0) for name in TINY_CLASSES),
            ranges=TINY_RANGES,
            min_size=26,
            max_size=64,
        ),
        class_names=TINY_CLASSES,
        beam_args=(),  # in-process Beam: the multi-process start-up costs more than tiny data saves
    )
    config = config.with_updates(
        image=replace(config.image, height=32, width=32),
        training=replace(
            config.training, width=0.25, epochs=12, batch_size=32, early_stopping_patience=12, warmup_epochs=1
        ),
        # Test configuration, not the product's gate: ~50 defective test wafers cannot show a 95 % lower
        # bound of 0.99 (that needs 299 with no miss), so this run is gated at 0.9 with class slices
        # judged from 10 defective wafers; tests/components/test_recall_gate.py checks the real default.
        gate=GateConfig(
            class_names=TINY_CLASSES, max_false_alarm_rate=0.2, min_defect_recall=0.9, min_slice_support=10
        ),
    )
    return config.with_updates(**changes) if changes else config


@pytest.fixture(scope="session")
def randomise_batchnorm():
    """``randomise_batchnorm(model, seed=0, affine=False)``: every BatchNorm of ``model`` gets moving statistics
    (with ``affine``, scale and offset too) far from the identity, in place, so that a fold, a batch-coupled
    path or a weight lost on reload shows in the outputs."""
    import numpy as np

    def randomise(model, seed: int = 0, affine: bool = False):
        rng = np.random.RandomState(seed)
        offsets = ("moving_mean", "beta") if affine else ("moving_mean",)
        scales = ("moving_variance", "gamma") if affine else ("moving_variance",)
        for variable in model.variables:
            if any(key in variable.name for key in offsets):
                variable.assign(rng.normal(0.0, 0.3, variable.shape))
            elif any(key in variable.name for key in scales):
                variable.assign(rng.uniform(0.5, 2.0, variable.shape))
        return model

    return randomise


@pytest.fixture(scope="session")
def tiny_class_mix():
    """A generator class mix of the tiny model's classes, equally often: maps the tiny model gets right."""
    return {name: 1.0 for name in TINY_CLASSES}


@pytest.fixture(scope="session")
def tiny_maps(tiny_class_mix):
    """``tiny_maps(count, seed, **overrides)``: fresh maps of the tiny problem (its classes and ranges)."""
    from spanet.data.generator import generate_wafer_maps

    data = tiny_pipeline_config("unused").default_data

    def make(count, seed, **overrides):
        return generate_wafer_maps(count, seed, data.generator_config(), **overrides)

    return make


@pytest.fixture(scope="session")
def tiny_config():
    """The :func:`tiny_pipeline_config` builder, for tests that run their own small pipeline."""
    return tiny_pipeline_config


@contextlib.contextmanager
def terminal_capture(folder: Path):
    """What a terminal would show: descriptors 1 and 2 (and sys.stdout / sys.stderr on them) sent to
    files for the block; yields a dict whose ``text`` is filled in at the end (stdout, then stderr)."""
    captured = {"text": ""}
    paths = [folder / "terminal_stdout.txt", folder / "terminal_stderr.txt"]
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    streams = (sys.stdout, sys.stderr)
    try:
        for fd, path in zip((1, 2), paths):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(target, fd)
            os.close(target)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        yield captured
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        captured["text"] = "".join(path.read_text() for path in paths)


@dataclass(frozen=True)
class TinyRun:
    """The shared run of the whole pipeline on tiny data (the ``tiny_pipeline_run`` fixture)."""

    #: The configuration it ran with; its ``output_root`` holds the metadata store, pipeline root and serving folder.
    config: PipelineConfig
    #: What ML Metadata recorded for the run (pipeline.results.read_results).
    results: RunResults
    #: ``pipeline.run_local.run``'s exit code.
    exit_code: int
    #: What the run printed on descriptors 1 and 2, as a terminal would show it (stdout, then stderr).
    terminal: str


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Holds an exclusive lock on ``lock_path`` (created if missing) for the block."""
    import fcntl

    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tiny_pipeline_run(tmp_path_factory) -> TinyRun:
    """One real run of the whole pipeline (LocalDagRunner) on tiny data, shared by the tests.

    Read-only for the tests: one that runs the pipeline again works on a copy of its output root
    (tests/pipeline/test_pipeline_e2e.py, ``copied_tiny_run_config``). Under ``pytest -n`` the worker
    processes share it too: the first to ask runs it, the others wait for it and read its results.
    """
    from pipeline.results import read_results
    from pipeline.run_local import run

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers' temporary folders sit in
    folder = root / "tiny_run"
    exit_file, terminal_file = folder / "exit_code.txt", folder / "terminal.txt"
    with _exclusive(root / "tiny_run.lock"):
        if not exit_file.exists():
            folder.mkdir(exist_ok=True)
            with terminal_capture(folder) as terminal:
                exit_code = run(tiny_pipeline_config(folder))
            terminal_file.write_text(terminal["text"])
            exit_file.write_text(str(exit_code))
    config = tiny_pipeline_config(folder)
    return TinyRun(
        config=config,
        results=read_results(config.metadata_path),
        exit_code=int(exit_file.read_text()),
        terminal=terminal_file.read_text(),
    )


@pytest.fixture(scope="session")
def pushed_model_dir(tiny_pipeline_run):
    """The TF Serving base directory (``<serving root>/<model name>``) holding the pushed version."""
    results = tiny_pipeline_run.results
    assert results.pushed, f"the tiny pipeline run was not pushed: blessed={results.blessed}"
    return Path(tiny_pipeline_run.config.serving_dir)
