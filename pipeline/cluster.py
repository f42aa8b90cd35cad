"""Typed configuration of the cluster side: Kubeflow Pipelines (the Trainer's resources, GPU node
scheduling, where the Pusher writes) and TF Serving on Kubernetes (image, ports, storage, batching).

The Kubeflow compiler (``pipeline/kubeflow.py``) and the manifest renderer
(``pipeline/serving_manifests.py``) read these, so a port, a mount path or a GPU toleration is
written down once. Model name and serving base directory stay in :class:`PipelineConfig`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from components.warmup import WARMUP_BATCH_SIZES

#: Where the models volume (a PVC) is mounted, in the Pusher's pod and in TF Serving's pod.
MODELS_MOUNT = "/models"
#: Default name of the PersistentVolumeClaim that holds pushed models (ReadWriteMany).
MODELS_PVC = "spanet-models"
#: The Kubernetes extended resource for NVIDIA GPUs (the device plugin's name).
NVIDIA_GPU = "nvidia.com/gpu"
#: The image the pipeline's components run in (``deploy/Dockerfile``); push it to your registry.
DEFAULT_PIPELINE_IMAGE = "spanet-tfx:0.1.0"
#: The TFX base image the pipeline image builds on (same TFX as the pinned stack).
TFX_BASE_IMAGE = "gcr.io/tfx-oss-public/tfx:1.16.0"
#: TF Serving's image and release (same TensorFlow line as the trainer and tensorflow-serving-api).
TF_SERVING_IMAGE = "tensorflow/serving"
TF_SERVING_VERSION = "2.16.1"

_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration (``operator`` is ``Exists`` when ``value`` is empty, else ``Equal``)."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __post_init__(self):
        if not _LABEL_KEY.match(self.key):
            raise ValueError(f"toleration key {self.key!r} is not a valid Kubernetes key")
        if self.effect not in _EFFECTS:
            raise ValueError(f"toleration effect {self.effect!r} must be one of {', '.join(_EFFECTS)}")

    @property
    def operator(self) -> str:
        return "Equal" if self.value else "Exists"

    @classmethod
    def parse(cls, text: str) -> "Toleration":
        """``KEY[=VALUE][:EFFECT]``, e.g. ``nvidia.com/gpu:NoSchedule`` or ``pool=gpu:NoExecute``."""
        body, _, effect = text.partition(":")
        key, _, value = body.partition("=")
        return cls(key=key, value=value, effect=effect or "NoSchedule")

    def to_kubernetes(self) -> Dict[str, str]:
        """The toleration as a pod spec (and kfp-kubernetes) writes it."""
        out = {"key": self.key, "operator": self.operator, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


#: GPU nodes are usually tainted ``nvidia.com/gpu:NoSchedule`` so that only GPU pods land on them.
GPU_TOLERATION = Toleration(key=NVIDIA_GPU)


def parse_label(text: str) -> Tuple[str, str]:
    """``KEY=VALUE`` for a node selector, e.g. ``cloud.google.com/gke-accelerator=nvidia-tesla-t4``."""
    key, sep, value = text.partition("=")
    if not sep or not _LABEL_KEY.match(key) or not value:
        raise ValueError(f"node selector {text!r} must be KEY=VALUE with a valid Kubernetes label key")
    return key, value


@dataclass(frozen=True)
class KubeflowConfig:
    """How the pipeline runs on Kubeflow Pipelines v2: image, Trainer resources, GPU scheduling."""

    image: str = DEFAULT_PIPELINE_IMAGE
    #: The Trainer's image (``deploy/Dockerfile.gpu``, TensorFlow with CUDA); None: ``image``.
    trainer_image: Optional[str] = None
    #: GPUs for the Trainer (0: CPU only) and their accelerator type; ``nvidia.com/gpu`` on
    #: Kubeflow, a Vertex type such as ``NVIDIA_TESLA_T4`` for Vertex AI Pipelines.
    trainer_gpus: int = 1
    gpu_type: str = NVIDIA_GPU
    #: Trainer CPU (cores) and memory (GB); requests equal limits. None: the cluster's defaults.
    trainer_cpu: Optional[float] = None
    trainer_memory_gb: Optional[float] = None
    #: Node labels and tolerations for the Trainer's pod (the platform section of the spec).
    node_selector: Tuple[Tuple[str, str], ...] = ()
    tolerations: Tuple[Toleration, ...] = ()
    #: A PVC mounted at ``MODELS_MOUNT`` in the Pusher's pod (None: the Pusher writes to a URI).
    serving_pvc: Optional[str] = None

    def __post_init__(self):
        for name in ("image", "trainer_image"):
            value = getattr(self, name)
            if (value is not None or name == "image") and (not value or any(c.isspace() for c in value)):
                raise ValueError(f"{name.replace('_', ' ')} {value!r} must be a non-empty image reference")
        if int(self.trainer_gpus) != self.trainer_gpus or self.trainer_gpus < 0:
            raise ValueError(f"trainer GPUs must be an integer >= 0; got {self.trainer_gpus!r}")
        for name in ("trainer_cpu", "trainer_memory_gb"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name.replace('_', ' ')} must be > 0; got {value!r}")
        if not self.gpu_type:
            raise ValueError("GPU type must not be empty")


@dataclass(frozen=True)
class Resources:
    """A container's requests (= limits for CPU and memory), optionally with NVIDIA GPUs."""

    cpu: str
    memory: str
    gpus: int = 0

    def whole_cores(self) -> int:
        """The CPU request in whole cores, at least 1 (Kubernetes quantities: ``"2"``, ``"1.5"``, ``"500m"``)."""
        try:
            cores = float(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)
        except ValueError:
            message = f"cpu must be a Kubernetes CPU quantity such as 2, 1.5 or 500m; got {self.cpu!r}"
            raise ValueError(message) from None
        return max(1, int(cores))

    def to_kubernetes(self) -> Dict[str, Dict[str, str]]:
        limits = {"cpu": self.cpu, "memory": self.memory}
        if self.gpus:
            limits[NVIDIA_GPU] = str(self.gpus)
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, "limits": limits}


@dataclass(frozen=True)
class BatchingConfig:
    """TF Serving's server-side batching (``--batching_parameters_file``).

    ``allowed_batch_sizes`` should match the warm-up batch sizes (``components/warmup.py``) so
    every padded shape is compiled before traffic; the last entry must equal ``max_batch_size``.
    """

    max_batch_size: int = WARMUP_BATCH_SIZES[-1]
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4
    allowed_batch_sizes: Tuple[int, ...] = WARMUP_BATCH_SIZES

    def __post_init__(self):
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ValueError(
                f"allowed batch sizes {sizes} must increase and end at max_batch_size {self.max_batch_size}"
            )


@dataclass(frozen=True)
class ServingDeployConfig:
    """TF Serving on Kubernetes: image, ports, storage of the model versions, resources, batching."""

    namespace: str = "spanet"
    image: str = TF_SERVING_IMAGE
    version: str = TF_SERVING_VERSION
    grpc_port: int = 8500
    rest_port: int = 8501
    replicas: int = 1
    #: Model versions served at once (``model_version_policy { latest { num_versions } }``).
    num_versions: int = 2
    #: Where versions are read: None -> the PVC below at ``MODELS_MOUNT/<model name>``; else a
    #: URI TF Serving reads itself (``gs://...``), which must equal the Pusher's base directory.
    model_base_uri: Optional[str] = None
    models_pvc: str = MODELS_PVC
    models_pvc_size: str = "10Gi"
    #: How often TF Serving polls the base directory for new versions and its config file.
    file_system_poll_wait_seconds: int = 30
    monitoring_path: str = "/monitoring/prometheus/metrics"
    cpu_resources: Resources = Resources(cpu="2", memory="4Gi")
    gpu_resources: Resources = Resources(cpu="4", memory="8Gi", gpus=1)
    gpu_node_selector: Tuple[Tuple[str, str], ...] = ()
    gpu_tolerations: Tuple[Toleration, ...] = (GPU_TOLERATION,)
    batching: BatchingConfig = field(default_factory=BatchingConfig)

    def base_path(self, model_name: str) -> str:
        """The model's base directory as TF Serving sees it."""
        if self.model_base_uri:
            return self.model_base_uri.rstrip("/")
        return f"{MODELS_MOUNT}/{model_name}"

    def storage_uri(self, model_name: str) -> str:
        """The same directory as KServe's ``storageUri`` (``pvc://<claim>/<path>`` for the PVC)."""
        if self.model_base_uri:
            return self.model_base_uri.rstrip("/")
        return f"pvc://{self.models_pvc}/{model_name}"
