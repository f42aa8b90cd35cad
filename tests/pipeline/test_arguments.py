"""pipeline/arguments.py: both runners take the same data, model, class and gate options, built into the same
typed configuration, and a value the configuration refuses is one line naming the option (exit status 2)."""

import pytest

from components.evaluation import GateConfig
from pipeline.config import PipelineConfig

#: Every shared option, each away from its default.
MODEL_ARGS = [
    "--data",
    "gs://bucket/wafers",
    "--format",
    "npz",
    "--model",
    "ghostnet",
    "--width",
    "0.75",
    "--r",
    "0.25",
    "--epochs",
    "7",
    "--batch-size",
    "16",
    "--image-size",
    "48",
    "--channels",
    "3",
    "--classes",
    "good,particle,bridge",
    "--normal-class",
    "good",
    "--mixed",
    "single",
    "--model-name",
    "wafer-net",
    "--min-defect-recall",
    "0.97",
    "--max-false-alarm-rate",
    "0.08",
    "--min-slice-support",
    "12",
    "--no-cache",
]
#: Options only the local runner has (where it writes, the size of the data it generates, its terminal).
LOCAL_ONLY = {"--output-root", "--count", "--verbose"}


def _options(parser):
    return {flag for action in parser._actions for flag in action.option_strings} - {"-h", "--help"}


def test_run_kubeflow_takes_every_option_of_run_local():
    from pipeline import run_kubeflow, run_local

    local, kubeflow = _options(run_local.build_parser()), _options(run_kubeflow.build_parser())
    assert LOCAL_ONLY <= local
    assert local - LOCAL_ONLY <= kubeflow
    gate = {"--min-defect-recall", "--max-false-alarm-rate", "--min-slice-support"}
    assert gate <= local and gate <= kubeflow


def test_the_same_options_build_the_same_configuration_in_both_runners():
    from pipeline import run_kubeflow, run_local

    local = run_local.config_from_args(*run_local.parse_args(MODEL_ARGS))
    kubeflow, _ = run_kubeflow.configs_from_args(*run_kubeflow.parse_args(MODEL_ARGS))
    for name in ("data_path", "data_format", "training", "image", "class_names", "mixed", "gate", "model_name"):
        assert getattr(local, name) == getattr(kubeflow, name), name
    assert local.enable_cache is kubeflow.enable_cache is False
    training = local.training
    assert (training.model, training.width, training.r, training.epochs, training.batch_size) == (
        "ghostnet",
        0.75,
        0.25,
        7,
        16,
    )
    assert (local.image.height, local.image.width, local.image.channels, local.image.normal_class) == (
        48,
        48,
        3,
        "good",
    )
    assert local.class_names == ("good", "particle", "bridge") and local.mixed == "single"
    gate = local.gate_config
    assert (gate.min_defect_recall, gate.max_false_alarm_rate, gate.min_slice_support) == (0.97, 0.08, 12)
    assert gate.class_names == local.class_names and gate.normal_class == "good"
    assert local.module_config.model_name == "wafer-net"


def test_defaults_are_the_typed_configuration_s():
    from pipeline import run_local

    config = run_local.config_from_args(*run_local.parse_args([]))
    default = PipelineConfig()
    assert config.training == default.training and config.image == default.image
    assert config.gate is None and config.model_name == default.model_name and config.enable_cache
    resolved = config.with_updates(class_names=("none", "Scratch"))
    assert resolved.gate_config == GateConfig(class_names=("none", "Scratch"))


def test_gate_options_follow_the_resolved_classes():
    """The gate's thresholds come from the options, its class set from the run (here: the default data's)."""
    from pipeline.classes import classes_for_compile
    from pipeline.run_kubeflow import configs_from_args, parse_args

    config, _ = configs_from_args(*parse_args(["--min-defect-recall", "0.9", "--normal-class", "none"]))
    gate = classes_for_compile(config).gate_config
    assert gate.min_defect_recall == 0.9 and "Scratch" in gate.class_names and gate.normal_class == "none"
    assert gate.defect_classes and "none" not in gate.defect_classes


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs 0: epochs must be an integer >= 1"),
        (["--batch-size", "-4"], "--batch-size -4: batch_size must be an integer >= 1"),
        (["--image-size", "4"], "--image-size 4: image height must be an integer >= 8"),
        (["--min-defect-recall", "1.5"], "--min-defect-recall 1.5: min_defect_recall must be in [0, 1]"),
        (["--max-false-alarm-rate", "-0.1"], "--max-false-alarm-rate -0.1: max_false_alarm_rate must be in [0, 1]"),
        (["--min-slice-support", "0"], "--min-slice-support 0:"),
        (["--classes", "good,bad", "--normal-class", "ok"], "--classes/--normal-class ok: the normal class 'ok'"),
    ],
)
@pytest.mark.parametrize("runner", ["run_local", "run_kubeflow"])
def test_a_refused_value_is_one_line_naming_the_option(runner, argv, message, tmp_path, capsys):
    import importlib

    module = importlib.import_module(f"pipeline.{runner}")
    extra = (
        ["--output-root", str(tmp_path / "out")] if runner == "run_local" else ["--output", str(tmp_path / "p.yaml")]
    )
    assert module.main(extra + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{runner}.py: ") and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.yaml").exists()


def test_beam_arguments_replace_or_extend_the_local_runner_s():
    from pipeline.arguments import apply_beam_arguments
    from pipeline.config import LOCAL_BEAM_ARGS

    config = PipelineConfig()
    assert apply_beam_arguments(config, []) is config
    assert apply_beam_arguments(config, ["--runner=FlinkRunner"]).beam_args == ("--runner=FlinkRunner",)
    assert apply_beam_arguments(config, ["--x=1"]).beam_args == LOCAL_BEAM_ARGS + ("--x=1",)
