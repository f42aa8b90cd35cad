"""TensorFlow's threads per op: the default the package sets, that a user's value wins, that TF obeys."""

import os
import subprocess
import sys

import pytest

from spanet.threads import (
    INTRA_OP_THREADS_ENV,
    apply_thread_defaults,
    available_cores,
    default_intra_op_threads,
)


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_one_thread_per_op_for_each_half_of_the_cores(cores, expected):
    assert default_intra_op_threads(cores) == expected


def test_no_cores_is_an_error_that_names_the_value():
    with pytest.raises(ValueError, match="cores must be at least 1, got 0"):
        default_intra_op_threads(0)


def test_the_default_is_set_when_absent_and_a_users_value_is_kept():
    environ = {}
    assert apply_thread_defaults(environ, cores=8) == "4"
    assert environ == {INTRA_OP_THREADS_ENV: "4"}
    user = {INTRA_OP_THREADS_ENV: "3"}
    assert apply_thread_defaults(user, cores=8) == "3"
    assert user == {INTRA_OP_THREADS_ENV: "3"}


def test_available_cores_is_positive_and_at_most_the_machines():
    assert 1 <= available_cores() <= (os.cpu_count() or 1)


# Imports the package (which sets the default), then makes TensorFlow start its runtime: its
# intra-op pool has one OS thread per intra-op thread, so the process's thread count shows the size.
_PROBE = """
import os, spanet, tensorflow as tf
tf.linalg.matmul(tf.ones([8, 8]), tf.ones([8, 8])).numpy()
print(os.environ["TF_NUM_INTRAOP_THREADS"], len(os.listdir("/proc/self/task")))
"""


def _probe(intra_op_threads=None):
    environment = {key: value for key, value in os.environ.items() if key != INTRA_OP_THREADS_ENV}
    if intra_op_threads is not None:
        environment[INTRA_OP_THREADS_ENV] = str(intra_op_threads)
    output = subprocess.run(
        [sys.executable, "-c", _PROBE], env=environment, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(output[-2]), int(output[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_tensorflow_runs_the_packages_default_pool_and_a_users_larger_one():
    default, default_threads = _probe()
    assert default == default_intra_op_threads(available_cores())
    larger, larger_threads = _probe(default + 3)
    assert larger == default + 3
    assert larger_threads - default_threads == 3
