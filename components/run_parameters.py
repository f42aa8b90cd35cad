"""The Trainer and the Evaluator with run-time parameters: TFX's own, plus one primitive execution property each.

A TFX ``RuntimeParameter`` (a KFP run argument) can only stand for a whole execution property of
type str, int or float: TFX 1.16's Kubeflow V2 compiler (``step_builder``) turns such a property
into a ``componentInputParameter``, but it writes a dict such as the Trainer's ``custom_config``
with ``json.dumps`` and a proto such as the Evaluator's ``eval_config`` as a JSON constant, so a
parameter cannot sit inside them. These components therefore add

- ``epochs`` (int) to the Trainer: its executor writes it into ``custom_config``'s training
  settings before TFX's GenericExecutor builds the ``run_fn``'s arguments, so the module code
  (``components.trainer``) reads the epochs where it always has;
- ``min_defect_recall`` (float) to the Evaluator: its executor sets the gate's defect-recall
  thresholds in ``eval_config`` (``components.evaluation.with_min_defect_recall``) before TFX's
  Evaluator executor hands the config to TFMA, which stores it with the evaluation.

Either property may be None (then the compiled ``custom_config`` / ``eval_config`` stand). Both are
part of the execution's cache key, so a run with another value trains or evaluates again.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional, Union

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_beam_component, base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, proto_utils

from components.config import ModuleConfig
from components.evaluation import with_min_defect_recall

#: The added execution properties (and the names the pipeline gives their run-time parameters).
EPOCHS_KEY = "epochs"
MIN_DEFECT_RECALL_KEY = "min_defect_recall"

_CUSTOM_CONFIG_KEY = standard_component_specs.CUSTOM_CONFIG_KEY
_EVAL_CONFIG_KEY = standard_component_specs.EVAL_CONFIG_KEY


def custom_config_with_epochs(custom_config: Optional[str], epochs: int) -> str:
    """The Trainer's JSON ``custom_config`` with ``epochs`` as its training epochs (checked by TrainingConfig)."""
    values: Dict[str, Any] = json.loads(custom_config or "null") or {}
    module = ModuleConfig.from_custom_config(values)
    training = dataclasses.replace(module.training, epochs=int(epochs))
    return json.dumps({**values, **dataclasses.replace(module, training=training).to_custom_config()})


class TrainerSpec(standard_component_specs.TrainerSpec):
    """TFX's TrainerSpec plus the run-time ``epochs``."""

    PARAMETERS = {
        **standard_component_specs.TrainerSpec.PARAMETERS,
        EPOCHS_KEY: ExecutionParameter(type=int, optional=True),
    }


class TrainerExecutor(trainer_executor.GenericExecutor):
    """TFX's GenericExecutor after writing the ``epochs`` property into ``custom_config``."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        properties = dict(exec_properties)
        epochs = properties.pop(EPOCHS_KEY, None)
        if epochs is not None:
            properties[_CUSTOM_CONFIG_KEY] = custom_config_with_epochs(properties.get(_CUSTOM_CONFIG_KEY), int(epochs))
        super().Do(input_dict, output_dict, properties)


class Trainer(base_component.BaseComponent):
    """TFX's Trainer (``run_fn`` by import path) whose training epochs can be a run-time parameter."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrainerExecutor)

    def __init__(
        self,
        examples: types.BaseChannel,
        run_fn: str,
        transform_graph: Optional[types.BaseChannel] = None,
        schema: Optional[types.BaseChannel] = None,
        train_args: Optional[trainer_pb2.TrainArgs] = None,
        eval_args: Optional[trainer_pb2.EvalArgs] = None,
        custom_config: Optional[Dict[str, Any]] = None,
        epochs: Optional[Union[int, data_types.RuntimeParameter]] = None,
    ):
        spec = TrainerSpec(
            examples=examples,
            transform_graph=transform_graph,
            schema=schema,
            train_args=train_args or trainer_pb2.TrainArgs(),
            eval_args=eval_args or trainer_pb2.EvalArgs(),
            run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config),
            epochs=epochs,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        )
        super().__init__(spec=spec)


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """TFX's EvaluatorSpec plus the run-time ``min_defect_recall``."""

    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        MIN_DEFECT_RECALL_KEY: ExecutionParameter(type=float, optional=True),
    }


class EvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator executor after setting the gate's minimum defect recall in ``eval_config``."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        properties = dict(exec_properties)
        minimum = properties.pop(MIN_DEFECT_RECALL_KEY, None)
        if minimum is not None:
            eval_config = proto_utils.json_to_proto(properties[_EVAL_CONFIG_KEY], tfma.EvalConfig())
            gated = with_min_defect_recall(eval_config, float(minimum))
            properties[_EVAL_CONFIG_KEY] = proto_utils.proto_to_json(gated)
        super().Do(input_dict, output_dict, properties)


class Evaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator (an ``eval_config`` from ``build_eval_config``) whose minimum defect recall can be a
    run-time parameter."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        eval_config: tfma.EvalConfig,
        baseline_model: Optional[types.BaseChannel] = None,
        example_splits: Optional[List[str]] = None,
        schema: Optional[types.BaseChannel] = None,
        min_defect_recall: Optional[Union[float, data_types.RuntimeParameter]] = None,
    ):
        spec = EvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            eval_config=eval_config,
            fairness_indicator_thresholds=json_utils.dumps(None),
            example_splits=json_utils.dumps(example_splits),
            schema=schema,
            min_defect_recall=min_defect_recall,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
