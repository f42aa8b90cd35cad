"""The pipeline's run-time parameters (data path, epochs, the gate's minimum defect recall): the components
carry them as TFX RuntimeParameters, the local runner resolves their defaults, and the executors that
receive them put them where the Trainer's module code and TFMA read them."""

import json

import pytest

from components.config import ModuleConfig, TrainingConfig
from components.evaluation import GateConfig, build_eval_config, with_min_defect_recall
from pipeline.config import PipelineConfig

CLASSES = ("none", "Center", "Scratch")


def _gate(**changes):
    return GateConfig(class_names=CLASSES, **changes)


def test_a_new_minimum_defect_recall_gives_the_eval_config_built_with_it():
    assert with_min_defect_recall(build_eval_config(_gate()), 0.95) == build_eval_config(_gate(min_defect_recall=0.95))
    multilabel = GateConfig(class_names=("none", "Center", "Center+Loc", "Loc"), patterns=("Center", "Loc"))
    assert with_min_defect_recall(build_eval_config(multilabel), 0.9) == build_eval_config(
        GateConfig(class_names=multilabel.class_names, patterns=multilabel.patterns, min_defect_recall=0.9)
    )
    with pytest.raises(ValueError, match="min_defect_recall must be in"):
        with_min_defect_recall(build_eval_config(_gate()), 1.5)


def test_the_trainer_executor_writes_the_epochs_into_custom_config(monkeypatch):
    from tfx.components.trainer import executor as trainer_executor

    from components.run_parameters import TrainerExecutor

    seen = {}
    monkeypatch.setattr(trainer_executor.GenericExecutor, "Do", lambda self, i, o, props: seen.update(props))
    module = ModuleConfig(training=TrainingConfig(width=0.75, epochs=30), model_name="wafer-net")
    custom_config = json.dumps(module.to_custom_config())
    TrainerExecutor().Do({}, {}, {"custom_config": custom_config, "epochs": 3, "run_fn": "m.run_fn"})
    assert "epochs" not in seen and seen["run_fn"] == "m.run_fn"
    read = ModuleConfig.from_custom_config(json.loads(seen["custom_config"]))
    assert read.training.epochs == 3 and read.training.width == 0.75 and read.model_name == "wafer-net"
    seen.clear()
    TrainerExecutor().Do({}, {}, {"custom_config": custom_config, "epochs": None})
    assert seen["custom_config"] == custom_config  # no value: the compiled configuration stands
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainerExecutor().Do({}, {}, {"custom_config": custom_config, "epochs": 0})


def test_the_evaluator_executor_gates_at_the_run_s_minimum_defect_recall(monkeypatch):
    import tensorflow_model_analysis as tfma
    from tfx.components.evaluator import executor as evaluator_executor
    from tfx.utils import proto_utils

    from components.eval_summary import gate_settings
    from components.run_parameters import EvaluatorExecutor

    seen = {}
    monkeypatch.setattr(evaluator_executor.Executor, "Do", lambda self, i, o, props: seen.update(props))
    compiled = proto_utils.proto_to_json(build_eval_config(_gate()))
    EvaluatorExecutor().Do({}, {}, {"eval_config": compiled, "min_defect_recall": 0.95})
    received = proto_utils.json_to_proto(seen["eval_config"], tfma.EvalConfig())
    assert "min_defect_recall" not in seen and gate_settings(received)["min_defect_recall"] == 0.95
    assert received == build_eval_config(_gate(min_defect_recall=0.95))


def test_the_components_carry_the_parameters_and_the_local_runner_resolves_their_defaults(tmp_path, monkeypatch):
    """LocalDagRunner compiles the pipeline and substitutes the parameters; its launcher is replaced by a
    recorder, so no component runs."""
    from tfx import v1 as tfx
    from tfx.orchestration import data_types
    from tfx.orchestration.local import local_dag_runner

    from pipeline.spanet_pipeline import create_pipeline

    config = PipelineConfig(
        output_root=str(tmp_path / "out"),
        data_path=str(tmp_path / "wafers"),
        class_names=CLASSES,
        training=TrainingConfig(epochs=5),
        gate=GateConfig(min_defect_recall=0.97),
    )
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / "m.sqlite"))
    pipeline = create_pipeline(config, metadata)
    carried = {
        (c.id, key): (value.name, value.default)
        for c in pipeline.components
        for key, value in c.exec_properties.items()
        if isinstance(value, data_types.RuntimeParameter)
    }
    assert carried == {
        ("WaferExampleGen", "data_path"): ("data_path", str(tmp_path / "wafers")),
        ("Trainer", "epochs"): ("epochs", 5),
        ("Evaluator", "min_defect_recall"): ("min_defect_recall", 0.97),
        ("EvaluationReporter", "min_defect_recall"): ("min_defect_recall", 0.97),
    }

    launched = {}

    class Recorder:
        def __init__(self, pipeline_node, **_):
            parameters = pipeline_node.parameters.parameters
            launched[pipeline_node.node_info.id] = {
                key: getattr(value.field_value, value.field_value.WhichOneof("value"))
                for key, value in parameters.items()
                if value.WhichOneof("value") == "field_value"
            }
            unresolved = [key for key, value in parameters.items() if value.WhichOneof("value") != "field_value"]
            assert not unresolved, f"{pipeline_node.node_info.id}: unresolved {unresolved}"

        def launch(self):
            return None

    monkeypatch.setattr(local_dag_runner.launcher, "Launcher", Recorder)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    assert launched["WaferExampleGen"]["data_path"] == str(tmp_path / "wafers")
    assert launched["Trainer"]["epochs"] == 5
    assert launched["Evaluator"]["min_defect_recall"] == launched["EvaluationReporter"]["min_defect_recall"] == 0.97
    assert json.loads(launched["Trainer"]["custom_config"])["training"]["epochs"] == 5  # the two agree


def test_run_time_arguments_are_checked_by_the_typed_configuration():
    config = PipelineConfig(class_names=CLASSES)
    changed = config.with_runtime_arguments({"epochs": 3, "min_defect_recall": 0.9, "data_path": "gs://b/other"})
    assert changed.runtime_defaults() == {"data_path": "gs://b/other", "epochs": 3, "min_defect_recall": 0.9}
    assert changed.gate_config.min_defect_recall == 0.9 and changed.training.epochs == 3
    for arguments, message in [
        ({"epochs": 0}, "epochs=0: epochs must be an integer >= 1"),
        ({"min_defect_recall": 1.2}, "min_defect_recall=1.2: min_defect_recall must be in [0, 1]"),
        ({"data_path": " "}, "data_path=' ': must not be empty"),
        ({"width": 1.0}, "width=1.0: not a run-time parameter"),
    ]:
        with pytest.raises(ValueError) as info:
            config.with_runtime_arguments(arguments)
        assert message in str(info.value)
