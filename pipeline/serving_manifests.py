"""Renders everything under ``deploy/`` from the pipeline and cluster configuration.

One source of truth: the model name comes from :class:`PipelineConfig`, ports, storage, resources
and batching from :class:`ServingDeployConfig`, the base images from ``pipeline/cluster.py``. The
rendered files are committed, and a test fails if they differ from a fresh rendering.

    python pipeline/serving_manifests.py                 # rewrite deploy/ (defaults: PVC storage)
    python pipeline/serving_manifests.py --check         # exit 1 if deploy/ is stale
    python pipeline/serving_manifests.py --out /tmp/d --model-base-uri gs://BUCKET/serving/spanet

Files: ``Dockerfile`` (the pipeline image); ``serving/`` (TF Serving's models.config, batching
parameters, monitoring config); ``k8s/`` (namespace, service account, models PVC, config map,
Service), ``k8s/cpu`` and ``k8s/gpu`` (the two Deployment variants), ``k8s/monitoring`` (a
Prometheus Operator ServiceMonitor); ``kserve/`` (the InferenceService alternative).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import pipeline.startup  # noqa: E402,F401  (before TensorFlow is imported)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)

import argparse  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Dict, List, Optional, Sequence  # noqa: E402

import yaml  # noqa: E402

from pipeline.cluster import MODELS_MOUNT, TFX_BASE_IMAGE, Resources, ServingDeployConfig  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from spanet.threads import default_intra_op_threads  # noqa: E402

PROG = "serving_manifests.py"
#: The repository's deploy folder (the default output).
DEPLOY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")
#: Where the config map is mounted in TF Serving's container, and its file names.
CONFIG_MOUNT = "/config"
MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching_parameters.txt"
MONITORING_CONFIG = "monitoring.config"
#: Seconds between TF Serving's re-reads of models.config (a changed config map takes effect).
MODEL_CONFIG_POLL_SECONDS = 60
#: The packages the pipeline image installs (setup.py's find_packages include list) and the files setup.py reads.
IMAGE_PACKAGES = ("spanet", "components", "pipeline", "schemas")
#: setup.py reads its dependency lists from the .in files; the image installs the runtime lock only.
IMAGE_FILES = ("setup.py", "pyproject.toml", "README.md", "requirements.in", "requirements-dev.in", "requirements.lock")


@dataclass(frozen=True)
class RequestLogging:
    """TF Serving's per-model ``logging_config``: a sampled share of requests written as PredictionLogs.

    Opt-in (``--request-log-collector``): open-source ``tensorflow_model_server`` registers no
    ``LogCollector`` type and builds its ServerCore without a request-logger creator, so the stock
    ``tensorflow/serving`` image refuses a model config with a ``logging_config`` ("No
    request-logger-creator provided.") and does not start. It needs a TF Serving build that
    registers a collector for ``collector_type`` (``REGISTER_LOG_COLLECTOR``); see docs/serving.md.
    """

    #: The LogCollector type registered in the serving build (``log_collector_config.type``).
    collector_type: str
    #: Share of requests logged (``sampling_config.sampling_rate``), in (0, 1].
    sampling_rate: float = 0.01
    #: Where the log volume is mounted (read-write) in TF Serving's container.
    mount: str = "/request-logs"
    pvc: str = "spanet-request-logs"
    pvc_size: str = "20Gi"

    def __post_init__(self):
        if not self.collector_type:
            raise ValueError("the request-log collector type must be named")
        if not 0.0 < float(self.sampling_rate) <= 1.0:
            raise ValueError(f"--request-log-sampling must be in (0, 1]; got {self.sampling_rate!r}")

    def filename_prefix(self, model_name: str) -> str:
        """``log_collector_config.filename_prefix``: per model, on the mounted volume."""
        return f"{self.mount}/{model_name}/prediction_log"


_HEADER = "Rendered by pipeline/serving_manifests.py from PipelineConfig and ServingDeployConfig; do not edit by hand."


def serving_name(config: PipelineConfig) -> str:
    """The Kubernetes name of the serving objects (Deployment, Service, ...)."""
    return f"{config.model_name}-serving"


def models_config(
    config: PipelineConfig, deploy: ServingDeployConfig, request_logging: Optional[RequestLogging] = None
) -> str:
    """TF Serving's ``--model_config_file``: one model, its base path, the latest N versions served
    (and its ``logging_config`` when request logging is on)."""
    logging_block = ""
    if request_logging is not None:
        logging_block = (
            "    logging_config {\n"
            "      log_collector_config {\n"
            f'        type: "{request_logging.collector_type}"\n'
            f'        filename_prefix: "{request_logging.filename_prefix(config.model_name)}"\n'
            "      }\n"
            "      sampling_config {\n"
            f"        sampling_rate: {request_logging.sampling_rate!r}\n"
            "      }\n"
            "    }\n"
        )
    return (
        f"# {_HEADER}\n"
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{config.model_name}"\n'
        f'    base_path: "{deploy.base_path(config.model_name)}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy {\n"
        "      latest {\n"
        f"        num_versions: {deploy.num_versions}\n"
        "      }\n"
        "    }\n"
        f"{logging_block}"
        "  }\n"
        "}\n"
    )


def batching_parameters(deploy: ServingDeployConfig) -> str:
    """TF Serving's ``--batching_parameters_file`` (a ``BatchingParameters`` text proto)."""
    b = deploy.batching
    lines = [f"# {_HEADER}"]
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        lines.append(f"{name} {{ value: {getattr(b, name)} }}")
    lines += [f"allowed_batch_sizes: {size}" for size in b.allowed_batch_sizes]
    return "\n".join(lines) + "\n"


def monitoring_config(deploy: ServingDeployConfig) -> str:
    """TF Serving's ``--monitoring_config_file``: Prometheus metrics on the REST port."""
    return f'# {_HEADER}\nprometheus_config {{\n  enable: true\n  path: "{deploy.monitoring_path}"\n}}\n'


def _metadata(config: PipelineConfig, deploy: ServingDeployConfig, name: Optional[str] = None) -> Dict[str, Any]:
    return {"name": name or serving_name(config), "namespace": deploy.namespace, "labels": _labels(config)}


def _labels(config: PipelineConfig) -> Dict[str, str]:
    return {"app.kubernetes.io/name": serving_name(config), "app.kubernetes.io/part-of": config.pipeline_name}


def _server_args(config: PipelineConfig, deploy: ServingDeployConfig, resources: Resources) -> List[str]:
    # Threads per op as the project's own processes use them (spanet.threads), for the container's cores.
    intra_op_threads = default_intra_op_threads(resources.whole_cores())
    return [
        f"--port={deploy.grpc_port}",
        f"--rest_api_port={deploy.rest_port}",
        f"--model_config_file={CONFIG_MOUNT}/{MODELS_CONFIG}",
        f"--model_config_file_poll_wait_seconds={MODEL_CONFIG_POLL_SECONDS}",
        f"--file_system_poll_wait_seconds={deploy.file_system_poll_wait_seconds}",
        "--enable_batching=true",
        f"--batching_parameters_file={CONFIG_MOUNT}/{BATCHING_CONFIG}",
        f"--monitoring_config_file={CONFIG_MOUNT}/{MONITORING_CONFIG}",
        "--enable_model_warmup=true",
        f"--tensorflow_intra_op_parallelism={intra_op_threads}",
    ]


def deployment(
    config: PipelineConfig,
    deploy: ServingDeployConfig,
    gpu: bool,
    request_logging: Optional[RequestLogging] = None,
) -> Dict[str, Any]:
    """The TF Serving Deployment, CPU or GPU variant (same name: apply one of them)."""
    resources: Resources = deploy.gpu_resources if gpu else deploy.cpu_resources
    volumes: List[Dict[str, Any]] = [{"name": "config", "configMap": {"name": f"{serving_name(config)}-config"}}]
    mounts: List[Dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}]
    if not deploy.model_base_uri:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": deploy.models_pvc, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True})
    if request_logging is not None:
        volumes.append({"name": "request-logs", "persistentVolumeClaim": {"claimName": request_logging.pvc}})
        mounts.append({"name": "request-logs", "mountPath": request_logging.mount})
    container = {
        "name": "tensorflow-serving",
        "image": f"{deploy.image}:{deploy.version}{'-gpu' if gpu else ''}",
        "command": ["tensorflow_model_server"],
        "args": _server_args(config, deploy, resources),
        "ports": [
            {"name": "grpc", "containerPort": deploy.grpc_port, "protocol": "TCP"},
            {"name": "http", "containerPort": deploy.rest_port, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": f"/v1/models/{config.model_name}", "port": deploy.rest_port},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "tcpSocket": {"port": deploy.grpc_port},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": resources.to_kubernetes(),
        "volumeMounts": mounts,
    }
    pod_spec: Dict[str, Any] = {
        "serviceAccountName": serving_name(config),
        "containers": [container],
        "volumes": volumes,
    }
    if gpu:
        if deploy.gpu_node_selector:
            pod_spec["nodeSelector"] = dict(deploy.gpu_node_selector)
        pod_spec["tolerations"] = [t.to_kubernetes() for t in deploy.gpu_tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_metadata(config, deploy), "annotations": {"spanet/variant": "gpu" if gpu else "cpu"}},
        "spec": {
            "replicas": deploy.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": serving_name(config)}},
            # A new pod takes traffic only when ready (its versions loaded and warmed up).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": _labels(config),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(deploy.rest_port),
                        "prometheus.io/path": deploy.monitoring_path,
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def service(config: PipelineConfig, deploy: ServingDeployConfig) -> Dict[str, Any]:
    """gRPC on 8500 and REST (and Prometheus metrics) on 8501."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(config, deploy),
        "spec": {
            "selector": {"app.kubernetes.io/name": serving_name(config)},
            "ports": [
                {"name": "grpc", "port": deploy.grpc_port, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "http", "port": deploy.rest_port, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def config_map(
    config: PipelineConfig, deploy: ServingDeployConfig, request_logging: Optional[RequestLogging] = None
) -> Dict[str, Any]:
    """The three server config files, mounted at ``CONFIG_MOUNT``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(config, deploy, f"{serving_name(config)}-config"),
        "data": {
            MODELS_CONFIG: models_config(config, deploy, request_logging),
            BATCHING_CONFIG: batching_parameters(deploy),
            MONITORING_CONFIG: monitoring_config(deploy),
        },
    }


def models_pvc(config: PipelineConfig, deploy: ServingDeployConfig) -> Dict[str, Any]:
    """The volume the Pusher writes versions to and TF Serving reads (both pods mount it)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(config, deploy, deploy.models_pvc),
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": deploy.models_pvc_size}}},
    }


def request_logs_pvc(config: PipelineConfig, deploy: ServingDeployConfig, logging: RequestLogging) -> Dict[str, Any]:
    """The read-write volume the request log collector writes PredictionLog files to."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(config, deploy, logging.pvc),
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": logging.pvc_size}}},
    }


def service_monitor(config: PipelineConfig, deploy: ServingDeployConfig) -> Dict[str, Any]:
    """A Prometheus Operator ServiceMonitor scraping TF Serving's metrics endpoint."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(config, deploy),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": serving_name(config)}},
            "endpoints": [{"port": "http", "path": deploy.monitoring_path, "interval": "30s"}],
        },
    }


def inference_service(config: PipelineConfig, deploy: ServingDeployConfig) -> Dict[str, Any]:
    """KServe alternative: a tensorflow predictor reading the Pusher's base directory."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": config.model_name, "namespace": deploy.namespace, "labels": _labels(config)},
        "spec": {
            "predictor": {
                "minReplicas": deploy.replicas,
                "serviceAccountName": serving_name(config),
                "tensorflow": {
                    "storageUri": deploy.storage_uri(config.model_name),
                    "runtimeVersion": deploy.version,
                    "resources": deploy.cpu_resources.to_kubernetes(),
                },
            }
        },
    }


def locked_version(package: str) -> str:
    """``package``'s version in requirements.lock, the one pinned set (the GPU image installs its CUDA extra)."""
    lock = os.path.join(os.path.dirname(DEPLOY_DIR), "requirements.lock")
    with open(lock, encoding="utf-8") as handle:
        for line in handle:
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep and name.lower() == package.lower():
                return version.strip()
    raise ValueError(f"{lock}: no pinned version of {package!r}")


def dockerfile(gpu: bool = False) -> str:
    """The pipeline image: the TFX base image plus the pinned stack and this package; with ``gpu``, plus
    TensorFlow's CUDA libraries (``tensorflow[and-cuda]`` at the locked version) for a GPU Trainer."""
    copies = "\n".join(f"COPY {name} {name}" for name in IMAGE_PACKAGES)
    if gpu:
        version = locked_version("tensorflow")
        purpose = (
            "# The pipeline image with TensorFlow's CUDA libraries, for a Trainer on NVIDIA GPUs\n"
            "# (run_kubeflow.py --gpus N --trainer-image, or --image for every step). The node needs only the\n"
            "# NVIDIA driver (>= 525, CUDA 12) and device plugin: CUDA and cuDNN come as pip wheels (nvidia-*-cu12).\n"
            "# Build from the repository root:  docker build -f deploy/Dockerfile.gpu -t REGISTRY/spanet-tfx:TAG-gpu ."
        )
        cuda = (
            "# CUDA for the locked TensorFlow: the extra's nvidia wheels; the lock keeps every other package "
            "where it is."
            "\n"
            f'RUN python -m pip install -c requirements.lock "tensorflow[and-cuda]=={version}" \\\n'
            f" && python -c \"import tensorflow as tf; assert tf.__version__ == '{version}' and "
            f'tf.test.is_built_with_cuda(), tf.__version__"\n'
        )
    else:
        purpose = (
            "# The image every pipeline component runs in (KubeflowV2DagRunner's default_image).\n"
            "# Build from the repository root:  docker build -f deploy/Dockerfile -t REGISTRY/spanet-tfx:TAG ."
        )
        cuda = ""
    return f"""# {_HEADER}
{purpose}
FROM {TFX_BASE_IMAGE}

ENV TF_USE_LEGACY_KERAS=1 \\
    PYTHONWARNINGS=ignore::FutureWarning \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/spanet
# The pinned set first (its own layer: it changes less often than the code).
COPY requirements.lock requirements.lock
RUN python -m pip install -r requirements.lock
{cuda}# The package itself, without re-resolving: components are found by import path
# (components.trainer.run_fn, components.transform.preprocessing_fn). No test or lint tools.
COPY setup.py pyproject.toml README.md requirements.in requirements-dev.in ./
{copies}
RUN python -m pip install --no-deps . \\
 && python -c "import components.trainer, components.transform, pipeline.spanet_pipeline"
"""


def dockerignore() -> str:
    """``Dockerfile.dockerignore`` (BuildKit reads it beside the Dockerfile): send only what the image
    copies, not the virtual environment or pipeline outputs, as the build context."""
    allowed = "\n".join(f"!{name}" for name in IMAGE_FILES + IMAGE_PACKAGES)
    return f"# {_HEADER}\n*\n{allowed}\n**/__pycache__\n**/*.pyc\n"


def _yaml(document: Dict[str, Any]) -> str:
    return f"# {_HEADER}\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=120)


def render(
    config: PipelineConfig, deploy: ServingDeployConfig, request_logging: Optional[RequestLogging] = None
) -> Dict[str, str]:
    """Relative path under ``deploy/`` -> file content (request logging only when asked: see RequestLogging)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": deploy.namespace}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(config, deploy)}
    files = {
        "Dockerfile": dockerfile(),
        "Dockerfile.dockerignore": dockerignore(),
        "Dockerfile.gpu": dockerfile(gpu=True),
        "Dockerfile.gpu.dockerignore": dockerignore(),
        f"serving/{MODELS_CONFIG}": models_config(config, deploy, request_logging),
        f"serving/{BATCHING_CONFIG}": batching_parameters(deploy),
        f"serving/{MONITORING_CONFIG}": monitoring_config(deploy),
        "k8s/namespace.yaml": _yaml(namespace),
        "k8s/serviceaccount.yaml": _yaml(account),
        "k8s/configmap.yaml": _yaml(config_map(config, deploy, request_logging)),
        "k8s/service.yaml": _yaml(service(config, deploy)),
        "k8s/cpu/deployment.yaml": _yaml(deployment(config, deploy, gpu=False, request_logging=request_logging)),
        "k8s/gpu/deployment.yaml": _yaml(deployment(config, deploy, gpu=True, request_logging=request_logging)),
        "k8s/monitoring/servicemonitor.yaml": _yaml(service_monitor(config, deploy)),
        "kserve/inferenceservice.yaml": _yaml(inference_service(config, deploy)),
    }
    if not deploy.model_base_uri:
        files["k8s/models-pvc.yaml"] = _yaml(models_pvc(config, deploy))
    if request_logging is not None:
        files["k8s/request-logs-pvc.yaml"] = _yaml(request_logs_pvc(config, deploy, request_logging))
    return dict(sorted(files.items()))


def stale_files(rendered: Dict[str, str], directory: str) -> List[str]:
    """Rendered files that are missing or different under ``directory``."""
    stale = []
    for relative, text in rendered.items():
        path = os.path.join(directory, relative)
        if not os.path.isfile(path) or open(path, encoding="utf-8").read() != text:
            stale.append(relative)
    return stale


def write(rendered: Dict[str, str], directory: str) -> None:
    for relative, text in rendered.items():
        path = os.path.join(directory, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Render deploy/ (Dockerfile, TF Serving configs, Kubernetes and KServe manifests)."
    )
    parser.add_argument("--out", default=DEPLOY_DIR, help="output folder (default: the repository's deploy/)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the folder differs from the rendering"
    )
    parser.add_argument(
        "--model-name", default=PipelineConfig.model_name, help="served model name (default: %(default)s)"
    )
    parser.add_argument(
        "--model-base-uri",
        help="read versions from this URI (e.g. gs://bucket/serving/spanet) instead of the models PVC",
    )
    parser.add_argument(
        "--namespace", default=ServingDeployConfig.namespace, help="Kubernetes namespace (default: %(default)s)"
    )
    parser.add_argument(
        "--request-log-collector",
        metavar="TYPE",
        help="enable TF Serving's logging_config with this LogCollector type (needs a TF Serving build that "
        "registers one: the stock image refuses any logging_config; see docs/serving.md)",
    )
    parser.add_argument(
        "--request-log-sampling",
        type=float,
        default=RequestLogging.sampling_rate,
        metavar="RATE",
        help="share of requests logged with --request-log-collector (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        config = PipelineConfig(model_name=args.model_name)
        deploy = ServingDeployConfig(namespace=args.namespace, model_base_uri=args.model_base_uri)
        request_logging = (
            RequestLogging(args.request_log_collector, sampling_rate=args.request_log_sampling)
            if args.request_log_collector
            else None
        )
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    rendered = render(config, deploy, request_logging)
    if args.check:
        stale = stale_files(rendered, args.out)
        if stale:
            print(
                f"{PROG}: stale under {args.out}: {', '.join(stale)}; run python pipeline/serving_manifests.py",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out} is up to date ({len(rendered)} files)")
        return 0
    write(rendered, args.out)
    print(f"Wrote {len(rendered)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
