"""Runs one function of a test module in a fresh interpreter whose CPU is split into two logical devices.

    python tests/two_replicas.py MODULE_FILE FUNCTION   # prints the function's JSON result last

Two replicas of ``tf.distribute.MirroredStrategy`` need two devices, and TensorFlow accepts a logical
device split only before it initialises its devices, which the other tests of a pytest process have done
long before: so the replicated tests run their cases here. In a test module::

    run_on_two_replicas = runpy.run_path(str(Path(__file__).parents[1] / "two_replicas.py"))["run_on_two_replicas"]
    result = run_on_two_replicas(__file__, "case_function")
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

REPOSITORY = Path(__file__).resolve().parents[1]
#: Marks the result line among whatever else the case prints.
RESULT_PREFIX = "TWO_REPLICAS_RESULT "


def run_on_two_replicas(module_file: str, function: str, timeout: float = 240) -> Dict[str, Any]:
    """Runs ``function()`` of ``module_file`` on two logical CPUs in a subprocess; its JSON-able result."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, __file__, str(module_file), function],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPOSITORY,
        env=environment,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise AssertionError(
            f"{function} failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def main(argv: List[str]) -> None:
    """Splits the CPU into two logical devices, then runs the named function of the module."""
    module_file, function = argv
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPOSITORY))
    import spanet  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    spec = importlib.util.spec_from_file_location(Path(module_file).stem, module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = getattr(module, function)()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
