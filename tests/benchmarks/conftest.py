"""The benchmark scripts, loaded by path (they are scripts, not a package)."""

import importlib.util
import os
import sys

import pytest

_BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


@pytest.fixture(scope="session")
def load_benchmark():
    """Returns ``load(name)``: the module ``benchmarks/<name>.py``, executed once per session."""
    loaded = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(name, os.path.join(_BENCHMARKS, f"{name}.py"))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    return load
