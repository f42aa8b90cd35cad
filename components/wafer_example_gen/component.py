"""The WaferExampleGen component: configuration by execution properties only (JSON strings, ints),
so the same component runs under LocalDagRunner and compiles for Kubeflow V2.

``data_path`` may be a TFX RuntimeParameter (str): a Kubeflow run then reads the data its arguments
name, without recompiling; the local runner uses the parameter's default.
"""

import json
from typing import Any, Mapping, Optional, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.wafer_example_gen.artifacts import WaferQuarantineReport
from components.wafer_example_gen.driver import INPUT_FINGERPRINT_KEY, WaferExampleGenDriver
from components.wafer_example_gen.executor import Executor
from spanet.data.readers import FORMATS
from spanet.data.splits import DEFAULT_SPLIT_RATIOS, normalise_ratios

DATA_PATH_KEY = "data_path"
DATA_FORMAT_KEY = "data_format"
SPLIT_RATIOS_KEY = "split_ratios"
SEED_KEY = "seed"
READER_OPTIONS_KEY = "reader_options"
EXAMPLES_KEY = "examples"
QUARANTINE_KEY = "quarantine"


class WaferExampleGenSpec(types.ComponentSpec):
    """Parameters: where the data is, its format, the split by lot; outputs: Examples + quarantine report."""

    PARAMETERS = {
        DATA_PATH_KEY: ExecutionParameter(type=str),
        DATA_FORMAT_KEY: ExecutionParameter(type=str),
        SPLIT_RATIOS_KEY: ExecutionParameter(type=str),  # JSON object {split name: weight}, in split order
        SEED_KEY: ExecutionParameter(type=int),
        READER_OPTIONS_KEY: ExecutionParameter(type=str, optional=True),  # JSON object of reader keyword options
        # Set by the driver, not by users: the data's fingerprint, so that changed data misses the cache.
        INPUT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        QUARANTINE_KEY: ChannelParameter(type=WaferQuarantineReport),
    }


class WaferExampleGen(base_beam_component.BaseBeamComponent):
    """Reads wafer maps / defect images (png | npz | g85 | wm811k | auto) into lot-disjoint splits of tf.Examples.

    Unreadable records go to the ``quarantine`` output with the file and the reason; an input where
    nothing is readable fails the run and publishes nothing. The driver fingerprints the data, so a
    rerun on changed data runs again instead of reusing the cache.
    """

    SPEC_CLASS = WaferExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = WaferExampleGenDriver

    def __init__(
        self,
        data_path: Union[str, data_types.RuntimeParameter],
        data_format: str = "auto",
        split_ratios: Optional[Mapping[str, float]] = None,
        seed: int = 0,
        reader_options: Optional[Mapping[str, Any]] = None,
    ):
        if data_format not in FORMATS:
            raise ValueError(f"data_format {data_format!r} is not one of {list(FORMATS)}")
        ratios = dict(split_ratios or DEFAULT_SPLIT_RATIOS)
        normalise_ratios(ratios)  # fail at pipeline definition, not at run time
        try:
            options_json = json.dumps(dict(reader_options or {}))
        except TypeError as exc:
            raise ValueError(f"reader_options must be JSON-serialisable: {exc}") from None
        spec = WaferExampleGenSpec(
            data_path=data_path if isinstance(data_path, data_types.RuntimeParameter) else str(data_path),
            data_format=data_format,
            split_ratios=json.dumps(ratios),
            seed=int(seed),
            reader_options=options_json,
            examples=types.Channel(type=standard_artifacts.Examples),
            quarantine=types.Channel(type=WaferQuarantineReport),
        )
        super().__init__(spec=spec)
