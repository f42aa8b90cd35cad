"""``create_pipeline(config)``: the one TFX pipeline that the local and the Kubeflow runners run.

WaferExampleGen -> StatisticsGen -> ClassSchemaGen (curated schema + this run's classes) -> ExampleValidator
-> SchemaAnomalyGate -> Transform -> Trainer -> Resolver (latest blessed model)
-> Evaluator (defect-recall gate on the test split) -> EvaluationReporter (report.html)
-> Pusher (TF Serving layout).

The data path, the training epochs and the gate's minimum defect recall are TFX RuntimeParameters
(``pipeline.config.RUNTIME_PARAMETERS``) whose defaults are the configuration's values: the local
runner resolves the defaults, a Kubeflow run may pass other values as its arguments. Each is a whole
primitive execution property (TFX's Kubeflow V2 compiler supports nothing else): WaferExampleGen's
``data_path``, and ``epochs`` / ``min_defect_recall`` of ``components.run_parameters``' Trainer and
Evaluator (and the report's ``min_defect_recall``).
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional

from tfx import v1 as tfx

from components.anomaly_gate import SchemaAnomalyGate
from components.class_schema import ClassSchemaGen
from components import run_parameters
from components.evaluation import build_eval_config
from components.report.component import EvaluationReporter
from components.wafer_example_gen import WaferExampleGen
from pipeline.config import (
    DATA_PATH_PARAMETER,
    EPOCHS_PARAMETER,
    MIN_DEFECT_RECALL_PARAMETER,
    RUNTIME_PARAMETERS,
    PipelineConfig,
)

#: Component code is referenced by import path, so a container image with the package runs it.
PREPROCESSING_FN = "components.transform.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"


def runtime_parameters(config: PipelineConfig) -> Dict[str, tfx.dsl.experimental.RuntimeParameter]:
    """The pipeline's run-time parameters, by name, each defaulting to the configuration's value."""
    return {
        name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=RUNTIME_PARAMETERS[name], default=default)
        for name, default in config.runtime_defaults().items()
    }


def create_components(config: PipelineConfig, run_id: object = "") -> List[tfx.dsl.components.base.base_node.BaseNode]:
    """The pipeline's components, wired, in execution order."""
    custom_config = config.module_config.to_custom_config()
    parameters = runtime_parameters(config)

    example_gen = WaferExampleGen(
        data_path=parameters[DATA_PATH_PARAMETER],
        data_format=config.resolved_data_format,
        split_ratios=dict(config.splits),
        seed=config.split_seed,
        reader_options=config.reader_options(config.resolved_data_format),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    if config.class_names is None:
        raise ValueError("the class set is not resolved: call pipeline.classes.resolve_classes(config) first")
    schema_gen = ClassSchemaGen(class_names=json.dumps(list(config.class_names)))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    anomaly_gate = SchemaAnomalyGate(
        anomalies=example_validator.outputs["anomalies"], schema=schema_gen.outputs["schema"]
    )

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=config.module_config.transform_custom_config(),
        # The Trainer reads the raw examples (it augments die maps before resizing them), so the
        # transformed examples would never be read: Transform only analyses and writes its graph.
        materialize=False,
    )
    transform.add_upstream_node(anomaly_gate)

    trainer = run_parameters.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=custom_config,
        epochs=parameters[EPOCHS_PARAMETER],
    )

    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    evaluator = run_parameters.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=build_eval_config(config.gate_config),
        example_splits=["test"],
        schema=schema_gen.outputs["schema"],
        min_defect_recall=parameters[MIN_DEFECT_RECALL_PARAMETER],
    )

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir)
        ),
    )

    # After the Pusher, so that the report names the version it pushed (or says nothing was).
    report = EvaluationReporter(
        model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"],
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"],
        quarantine=example_gen.outputs["quarantine"],
        pushed_model=pusher.outputs["pushed_model"],
        min_defect_recall=parameters[MIN_DEFECT_RECALL_PARAMETER],
        max_false_alarm_rate=config.gate_config.max_false_alarm_rate,
        class_order=json.dumps(list(config.display_classes)),
        run_id=run_id,
    )
    return [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        anomaly_gate,
        transform,
        trainer,
        model_resolver,
        evaluator,
        pusher,
        report,
    ]


def create_pipeline(
    config: PipelineConfig, metadata_connection_config: Optional[object] = None, run_id: object = ""
) -> tfx.dsl.Pipeline:
    """The TFX pipeline for ``config``; the local runner passes a SQLite metadata connection and the run id
    placeholder for the report's header (Kubeflow v2 refuses that placeholder: its reports name the execution)."""
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config, run_id),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
