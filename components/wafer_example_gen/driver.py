"""WaferExampleGen's driver: fingerprints the input data so that changed data is never served from the cache.

TFX caches an execution by its inputs and execution properties; WaferExampleGen has no input
artifacts and its properties name only a path, so a rerun on the same path after files were
added, removed or rewritten used to reuse every cached component and report the old model. This
driver runs before the cache lookup (as TFX's own FileBasedDriver does for file-based
ExampleGens) and adds ``input_fingerprint``: a SHA-256 over every file under the data path, its
relative name, size and modification time. Changed data changes the fingerprint, so ingestion
and everything downstream run again; unchanged data still hits the cache. Like TFX's fingerprint
it reads no file contents: a rewrite that keeps a file's size and mtime is not seen.
"""

import hashlib
import os
from typing import List, Tuple

from tfx.dsl.components.base import base_driver
from tfx.dsl.io import fileio
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.orchestration.portable import data_types as portable_data_types
from tfx.orchestration import data_types_utils
from tfx.proto.orchestration import driver_output_pb2

#: The execution property the driver adds (part of the cache key, and recorded in ML Metadata).
INPUT_FINGERPRINT_KEY = "input_fingerprint"


def _listing(data_path: str) -> List[Tuple[str, int, int]]:
    """(name relative to data_path, size, mtime in ns) of every file under data_path (or of data_path itself)."""
    if not fileio.isdir(data_path):
        stat = fileio.stat(data_path)
        return [(os.path.basename(data_path), int(stat.length), int(stat.mtime_nsec))]
    rows = []
    for folder, _, files in fileio.walk(data_path):
        folder = folder.decode() if isinstance(folder, bytes) else folder
        for name in files:
            name = name.decode() if isinstance(name, bytes) else name
            path = os.path.join(folder, name)
            stat = fileio.stat(path)
            rows.append((os.path.relpath(path, data_path), int(stat.length), int(stat.mtime_nsec)))
    return sorted(rows)


def input_fingerprint(data_path: str) -> str:
    """``files:N,bytes:B,sha256:H`` of the data under ``data_path`` (names, sizes, mtimes); "missing" if absent."""
    if not fileio.exists(data_path):
        return "missing"
    rows = _listing(data_path)
    digest = hashlib.sha256()
    for name, size, mtime in rows:
        digest.update(f"{name}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return f"files:{len(rows)},bytes:{sum(r[1] for r in rows)},sha256:{digest.hexdigest()}"


class WaferExampleGenDriver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
    """Adds the input fingerprint to the execution properties before the launcher looks in the cache."""

    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        ir_base_driver.BaseDriver.__init__(self, metadata_handle)

    def run(self, execution_info: portable_data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        from components.wafer_example_gen.component import DATA_PATH_KEY

        result = driver_output_pb2.DriverOutput()
        for key, value in execution_info.exec_properties.items():
            if value is not None:
                data_types_utils.set_metadata_value(result.exec_properties[key], value)
        fingerprint = input_fingerprint(str(execution_info.exec_properties[DATA_PATH_KEY]))
        result.exec_properties[INPUT_FINGERPRINT_KEY].string_value = fingerprint
        return result
