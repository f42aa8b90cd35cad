"""TensorFlow's CPU thread pools for this network: fewer threads per op, more ops side by side.

SP&A-Net's ops are small (a 16x16x72 map of a batch of 64 is 4.7 MB), so splitting one op over
every core costs more in hand-over than it gains, while the graph has independent work to run at
once: the two halves of an inference batch (``spanet.halves``), the shortcut beside the main path,
the weight and input gradients of each layer. On the 2-core machine, one intra-op thread per op
(TensorFlow's default is one per core) made Keras ``predict`` 1.8x and training 1.06x faster; the
published code's layer-by-layer model trained at most 4 % faster and predicted 11-16 % slower, so
it is measured on TensorFlow's own default (``benchmarks/bench_model.py``).

TensorFlow reads ``TF_NUM_INTRAOP_THREADS`` when it creates its runtime, at the first op, so this
module only sets an environment default, before any op runs and never over a value already set
(a user's ``TF_NUM_INTRAOP_THREADS=4`` wins). Child processes (Beam workers) inherit it.
"""

from __future__ import annotations

import os
from typing import MutableMapping, Optional

#: The environment variable TensorFlow reads for its intra-op pool size (threads per op).
INTRA_OP_THREADS_ENV = "TF_NUM_INTRAOP_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, as containers restrict it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API on this platform
        return max(1, os.cpu_count() or 1)


def default_intra_op_threads(cores: int) -> int:
    """Threads per op: half the cores, so that the two halves of a batch run side by side on their own
    cores (1 on this 2-core machine; more than 2 cores are not measured here)."""
    if cores < 1:
        raise ValueError(f"cores must be at least 1, got {cores}")
    return max(1, cores // 2)


def apply_thread_defaults(environ: Optional[MutableMapping[str, str]] = None, cores: Optional[int] = None) -> str:
    """Sets ``TF_NUM_INTRAOP_THREADS`` unless it is set already; returns the value in effect."""
    environ = os.environ if environ is None else environ
    cores = available_cores() if cores is None else cores
    return environ.setdefault(INTRA_OP_THREADS_ENV, str(default_intra_op_threads(cores)))
