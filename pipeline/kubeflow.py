"""Compiles ``create_pipeline(config)`` for Kubeflow Pipelines v2 (and Vertex AI Pipelines).

``KubeflowV2DagRunner`` turns the same TFX pipeline the local runner runs into a KFP pipeline
spec (schema 2.1). On top of what the runner writes, this module

- gives the Trainer its resources (CPU, memory, GPUs) through ``with_platform_config`` and, if one
  is named, its own image (the CUDA build of ``deploy/Dockerfile.gpu``);
- writes each run-time parameter's default into the spec's root inputs (``isOptional``,
  ``defaultValue``): TFX declares the parameters there without defaults, so KFP would demand a
  value for every one in every run;
- sets the spec's ``defaultPipelineRoot`` to the configured root (the runner leaves it empty,
  so KFP would fall back to its own MinIO root);
- appends the Kubernetes platform section (kfp-kubernetes format, a second YAML document) with
  the Trainer's node selector and tolerations and, optionally, the models PVC in the Pusher's pod.

Output is deterministic: keys are sorted and nothing time-dependent is written.
"""

from __future__ import annotations

import json
import os


from typing import Any, Dict, Mapping, Optional

import yaml

from pipeline.cluster import MODELS_MOUNT, KubeflowConfig
from pipeline.config import PipelineConfig

#: Node ids (and so executor labels ``<id>_executor``) of the components the cluster config touches.
TRAINER_ID = "Trainer"
PUSHER_ID = "Pusher"


def executor_label(node_id: str) -> str:
    """The executor a TFX node compiles to in ``deploymentSpec.executors``."""
    return f"{node_id}_executor"


def trainer_resources(kubeflow: KubeflowConfig):
    """The Trainer's ``ResourceSpec`` (None when nothing is requested)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    resource_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    spec = resource_spec()
    if kubeflow.trainer_cpu:
        spec.cpu_limit = spec.cpu_request = float(kubeflow.trainer_cpu)
    if kubeflow.trainer_memory_gb:
        spec.memory_limit = spec.memory_request = float(kubeflow.trainer_memory_gb)
    if kubeflow.trainer_gpus:
        spec.accelerator.CopyFrom(
            resource_spec.AcceleratorConfig(type=kubeflow.gpu_type, count=int(kubeflow.trainer_gpus))
        )
    return spec if spec.ByteSize() else None


def kubernetes_platform(kubeflow: KubeflowConfig) -> Dict[str, Any]:
    """The ``platforms.kubernetes`` document (kfp-kubernetes format); empty when nothing is set."""
    executors: Dict[str, Dict[str, Any]] = {}
    trainer: Dict[str, Any] = {}
    if kubeflow.node_selector:
        trainer["nodeSelector"] = {"labels": dict(kubeflow.node_selector)}
    if kubeflow.tolerations:
        trainer["tolerations"] = [t.to_kubernetes() for t in kubeflow.tolerations]
    if trainer:
        executors[executor_label(TRAINER_ID)] = trainer
    if kubeflow.serving_pvc:
        executors[executor_label(PUSHER_ID)] = {
            "pvcMount": [{"constant": kubeflow.serving_pvc, "mountPath": MODELS_MOUNT}]
        }
    if not executors:
        return {}
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def component_images(kubeflow: KubeflowConfig) -> Any:
    """KubeflowV2DagRunner's ``default_image``: one image, or a map with the Trainer's own."""
    if not kubeflow.trainer_image or kubeflow.trainer_image == kubeflow.image:
        return kubeflow.image
    from tfx.orchestration.kubeflow.v2.pipeline_builder import DEFAULT_IMAGE_PATH_KEY

    return {DEFAULT_IMAGE_PATH_KEY: kubeflow.image, TRAINER_ID: kubeflow.trainer_image}


def runtime_parameter_defaults(pipeline: Any) -> Dict[str, Any]:
    """Each TFX RuntimeParameter the pipeline's components take, by name, with its default."""
    from tfx.orchestration import data_types

    defaults: Dict[str, Any] = {}
    for component in pipeline.components:
        for value in component.exec_properties.values():
            if isinstance(value, data_types.RuntimeParameter):
                if defaults.get(value.name, value.default) != value.default:
                    raise ValueError(f"run-time parameter {value.name!r} has two defaults")
                defaults[value.name] = value.default
    return defaults


def set_parameter_defaults(spec: Dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """Marks each run-time parameter of the spec's root inputs optional, with its default."""
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    missing = sorted(set(defaults) - set(parameters))
    if missing:
        raise ValueError(f"run-time parameters {missing} are missing from the compiled spec's root inputs")
    for name, default in defaults.items():
        parameters[name]["defaultValue"] = default
        parameters[name]["isOptional"] = True


def build_pipeline_job(config: PipelineConfig, kubeflow: KubeflowConfig) -> Dict[str, Any]:
    """The PipelineJob dict (``pipelineSpec``, ``runtimeConfig``, ...) for ``config`` on Kubeflow."""
    from tfx import v1 as tfx

    from pipeline.classes import classes_for_compile
    from pipeline.spanet_pipeline import create_pipeline

    # Unresolved: no classes yet, or multi-label patterns not yet split from their combinations.
    unresolved = config.class_names is None or (config.mixed == "multilabel" and not config.image.patterns)
    pipeline = create_pipeline(classes_for_compile(config) if unresolved else config)
    resources = trainer_resources(kubeflow)
    if resources is not None:
        trainer = [c for c in pipeline.components if c.id == TRAINER_ID]
        if len(trainer) != 1:
            raise ValueError(f"the pipeline has no single {TRAINER_ID!r} component to give resources to")
        trainer[0].with_platform_config(resources)
    runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
        default_image=component_images(kubeflow), use_pipeline_spec_2_1=True
    )
    job = tfx.orchestration.experimental.KubeflowV2DagRunner(config=runner_config).run(pipeline, write_out=False)
    job["pipelineSpec"]["defaultPipelineRoot"] = config.pipeline_root
    set_parameter_defaults(job["pipelineSpec"], runtime_parameter_defaults(pipeline))
    return job


def spec_yaml(job: Dict[str, Any], platform: Dict[str, Any]) -> str:
    """The KFP package text: the pipeline spec, then the platform document if there is one."""
    spec = job["pipelineSpec"]
    header = (
        "# PIPELINE DEFINITION\n"
        f"# Name: {spec['pipelineInfo']['name']}\n"
        f"# Description: compiled from the spanet TFX pipeline ({spec.get('sdkVersion', '')}); "
        "see docs/kubeflow.md\n"
    )
    documents = [spec] + ([platform] if platform else [])
    return header + yaml.safe_dump_all(documents, sort_keys=True)


def vertex_json(job: Dict[str, Any]) -> str:
    """The PipelineJob JSON that Vertex AI Pipelines takes (``aiplatform.PipelineJob(template_path=...)``)."""
    return json.dumps(job, sort_keys=True, indent=2) + "\n"


def compile_pipeline(
    config: PipelineConfig, kubeflow: KubeflowConfig, output: str, vertex_output: Optional[str] = None
) -> Dict[str, Any]:
    """Writes the KFP v2 pipeline spec YAML to ``output`` (and the Vertex JSON); returns the job dict."""
    job = build_pipeline_job(config, kubeflow)
    platform = kubernetes_platform(kubeflow)
    _write(output, spec_yaml(job, platform))
    if vertex_output:
        _write(vertex_output, vertex_json(job))
    return job


def _write(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
