"""The pipeline's typed configuration and the local runner's arguments."""

import pytest

from components.config import ModuleConfig, TrainingConfig
from pipeline.config import LOCAL_BEAM_ARGS, PipelineConfig
from pipeline.run_local import config_from_args, parse_args


def test_paths_follow_the_output_root():
    config = PipelineConfig(output_root="/x")
    assert config.pipeline_root == "/x/pipeline"
    assert config.metadata_path == "/x/metadata/metadata.sqlite"
    assert config.serving_dir == "/x/serving/spanet"
    assert config.resolved_data_path == config.default_data_dir and config.resolved_data_format == "png"


def test_custom_config_round_trips_through_json():
    config = ModuleConfig(training=TrainingConfig(width=0.75, epochs=3))
    assert ModuleConfig.from_custom_config(config.to_custom_config()) == config
    with pytest.raises(ValueError, match=r"unknown TrainingConfig field\(s\) \['widht'\]"):
        ModuleConfig.from_custom_config({"training": {"widht": 1.0}})


def test_runner_arguments_and_beam_pass_through():
    args, beam = parse_args(["--output-root", "/o", "--data", "/d", "--format", "npz", "--width", "1.0", "--epochs", "5",
                             "--runner=DataflowRunner", "--project=p"])
    config = config_from_args(args, beam)
    assert config.data_path == "/d" and config.data_format == "npz"
    assert config.training.width == 1.0 and config.training.epochs == 5
    assert config.beam_args == ("--runner=DataflowRunner", "--project=p")
    args, beam = parse_args(["--direct_num_workers=1"])
    assert config_from_args(args, beam).beam_args == LOCAL_BEAM_ARGS + ("--direct_num_workers=1",)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="splits must include 'test'"):
        PipelineConfig(splits=(("train", 0.8), ("eval", 0.2)))
    with pytest.raises(ValueError, match="image channels must be 1"):
        ModuleConfig.from_custom_config({"image": {"channels": 2}})
    with pytest.raises(ValueError, match="class_weighting must be 'balanced' or 'none'"):
        TrainingConfig(class_weighting="focal")


def test_stray_positional_arguments_are_refused(capsys):
    from pipeline.run_local import main

    assert main(["data/maps"]) == 2
    assert "unexpected argument(s) ['data/maps']; options start with --" in capsys.readouterr().err
