"""Training on the devices a node (or a cluster) has: the distribution strategy and how the recipe scales.

- :func:`choose_strategy`: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names more than one worker
  (the chief counts as one), ``MirroredStrategy`` when more than one GPU is visible, the default
  (single-device) strategy otherwise. :func:`strategy_kind` is the same choice without building anything.
- The configured batch size is the batch of one replica: the global batch, the one a step consumes and
  the input pipeline makes, is ``per-replica batch x replicas`` (:func:`global_batch_size`).
- The scaling rule (:func:`scale_learning_rate`): the configured rates belong to the configured batch;
  on a larger global batch SGD / NAG rates grow linearly with it (Goyal et al. 2017, "Accurate, Large
  Minibatch SGD": k times the batch, k times the rate), Adam's with its square root (Malladi et al.
  2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"), and a scaled rate is
  reached through a linear warm-up of at least :data:`MIN_SCALED_WARMUP_EPOCHS` epoch
  (:func:`scaled_warmup_epochs`), so the first steps on random weights do not take the full rate.
  One replica changes nothing.

Keras divides a ``SUM_OVER_BATCH_SIZE`` loss (every ``keras.losses.Loss`` left at its default
reduction, such as ``spanet.CircleLoss``) by the number of replicas and sums the replicas' gradients,
so a step on the global batch sees the global batch's mean loss, per-sample weights included.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional, Sequence, Union

from spanet._keras import tf

#: The kinds :func:`strategy_kind` returns.
DEFAULT, MIRRORED, MULTI_WORKER = "default", "mirrored", "multi_worker"
#: Task types of ``TF_CONFIG`` that train (an ``evaluator`` or a ``ps`` does not).
TRAINING_TASKS = ("chief", "worker")
#: The shortest warm-up (in epochs) in front of a learning rate scaled up for a larger global batch.
MIN_SCALED_WARMUP_EPOCHS = 1
#: Optimisers whose rate scales with the square root of the batch; every other one scales linearly.
SQRT_SCALED_OPTIMIZERS = ("adam",)

TfConfig = Union[None, str, Mapping[str, Any]]


def parse_tf_config(tf_config: TfConfig = None) -> dict:
    """``TF_CONFIG`` as a dict (``{}`` when unset or empty); ``None`` reads the environment variable."""
    if tf_config is None:
        tf_config = os.environ.get("TF_CONFIG", "")
    if isinstance(tf_config, str):
        tf_config = json.loads(tf_config) if tf_config.strip() else {}
    if not isinstance(tf_config, Mapping):
        raise ValueError(f"TF_CONFIG must be a JSON object; got {tf_config!r}")
    return dict(tf_config)


def worker_count(tf_config: TfConfig = None) -> int:
    """How many training tasks (chief and workers) ``TF_CONFIG``'s cluster names; 0 without a cluster."""
    cluster = parse_tf_config(tf_config).get("cluster") or {}
    return sum(len(cluster.get(task) or ()) for task in TRAINING_TASKS)


def is_chief(tf_config: TfConfig = None) -> bool:
    """Whether this task writes the run's outputs: the chief, or worker 0 of a cluster without a chief."""
    config = parse_tf_config(tf_config)
    task = config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if not kind:  # not part of a cluster
        return True
    if kind == "chief":
        return True
    has_chief = bool((config.get("cluster") or {}).get("chief"))
    return kind == "worker" and index == 0 and not has_chief


def strategy_kind(gpus: int, tf_config: TfConfig = None) -> str:
    """:data:`MULTI_WORKER` for several workers in ``TF_CONFIG``, :data:`MIRRORED` for several GPUs, else
    :data:`DEFAULT`."""
    if worker_count(tf_config) > 1:
        return MULTI_WORKER
    return MIRRORED if gpus > 1 else DEFAULT


def choose_strategy(tf_config: TfConfig = None, device_type: str = "GPU") -> tf.distribute.Strategy:
    """The strategy for this node: one replica per visible ``device_type`` device, or per worker of a cluster.

    ``device_type="CPU"`` mirrors over logical CPU devices (tests); one device gives the default strategy.
    """
    config = parse_tf_config(tf_config)
    # Decided before listing devices: that starts TensorFlow's runtime, after which the multi-worker
    # strategy can no longer configure its collective ops.
    if worker_count(config) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG itself
    devices: Sequence[Any] = tf.config.list_logical_devices(device_type)
    if strategy_kind(len(devices), config) == MIRRORED:
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def replicas(strategy: Optional[tf.distribute.Strategy] = None) -> int:
    """Replicas that train in step (the current strategy's when ``strategy`` is None)."""
    return int((strategy or tf.distribute.get_strategy()).num_replicas_in_sync)


def global_batch_size(per_replica_batch: int, replica_count: int) -> int:
    """The batch one step consumes: the configured (per-replica) batch on every replica."""
    if int(per_replica_batch) < 1 or int(replica_count) < 1:
        raise ValueError(f"batch and replicas must be integers >= 1; got {per_replica_batch!r}, {replica_count!r}")
    return int(per_replica_batch) * int(replica_count)


def scale_learning_rate(rate: float, global_batch: int, base_batch: int, optimizer: str = "nag") -> float:
    """``rate`` (tuned at ``base_batch``) for ``global_batch``: linear in the batch, square root for Adam."""
    factor = float(global_batch) / float(base_batch)
    if factor <= 0:
        raise ValueError(f"batch sizes must be positive; got {global_batch!r} and {base_batch!r}")
    return float(rate) * (math.sqrt(factor) if optimizer in SQRT_SCALED_OPTIMIZERS else factor)


def scaled_warmup_epochs(warmup_epochs: int, global_batch: int, base_batch: int) -> int:
    """The configured warm-up, lengthened to at least :data:`MIN_SCALED_WARMUP_EPOCHS` when the rate was scaled up."""
    if global_batch > base_batch:
        return max(int(warmup_epochs), MIN_SCALED_WARMUP_EPOCHS)
    return int(warmup_epochs)


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Multi-worker input: every worker reads all files and keeps its share of the batches (a split is
    often a single file, which file-based sharding cannot divide)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


__all__ = [
    "DEFAULT",
    "MIRRORED",
    "MULTI_WORKER",
    "MIN_SCALED_WARMUP_EPOCHS",
    "parse_tf_config",
    "worker_count",
    "is_chief",
    "strategy_kind",
    "choose_strategy",
    "replicas",
    "global_batch_size",
    "scale_learning_rate",
    "scaled_warmup_epochs",
    "shard_by_data",
]
