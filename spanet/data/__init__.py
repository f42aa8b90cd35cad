"""Wafer data in: the synthetic generator, the readers and writers of the formats fabs have, and splits.

Pure NumPy / Pillow / pandas: no TensorFlow or TFX here (the TFX component lives in ``components/``).
"""

from spanet.data.classes import (
    FAIL_DIE_LEVEL,
    NORMAL_CLASS,
    OFF_WAFER_LEVEL,
    PASS_DIE_LEVEL,
    WAFER_CLASSES,
    label_parts,
    mixed_label,
)
from spanet.data.convention import check_die_map, die_map_to_image, image_to_die_map
from spanet.data.formats.base import ReadPlan, Reader, Shard, shuffle_plan
from spanet.data.formats.g85 import G85Reader, write_g85
from spanet.data.formats.image_folder import ImageFolderReader, write_image_folder
from spanet.data.formats.mixedwm38 import MixedWM38Reader, write_mixedwm38
from spanet.data.formats.wm811k import WM811KReader
from spanet.data.generator import GeneratorConfig, generate_wafer_maps, iter_wafer_maps
from spanet.data.imageio import decode_image, encode_png
from spanet.data.readers import FORMATS, READERS, detect_format, make_reader, read_records
from spanet.data.records import DataInputError, ReadResult, RejectedRecord, RejectKind, WaferRecord
from spanet.data.safe_pickle import UnsafePickleError, restricted_load
from spanet.data.splits import DEFAULT_SPLIT_RATIOS, assign_split
from spanet.data.writers import WRITERS, write_dataset

__all__ = [
    "WAFER_CLASSES",
    "NORMAL_CLASS",
    "OFF_WAFER_LEVEL",
    "PASS_DIE_LEVEL",
    "FAIL_DIE_LEVEL",
    "label_parts",
    "mixed_label",
    "check_die_map",
    "die_map_to_image",
    "image_to_die_map",
    "Reader",
    "ReadPlan",
    "Shard",
    "shuffle_plan",
    "G85Reader",
    "ImageFolderReader",
    "MixedWM38Reader",
    "WM811KReader",
    "write_g85",
    "write_image_folder",
    "write_mixedwm38",
    "write_dataset",
    "WRITERS",
    "GeneratorConfig",
    "generate_wafer_maps",
    "iter_wafer_maps",
    "decode_image",
    "encode_png",
    "FORMATS",
    "READERS",
    "detect_format",
    "make_reader",
    "read_records",
    "DataInputError",
    "ReadResult",
    "RejectedRecord",
    "RejectKind",
    "WaferRecord",
    "UnsafePickleError",
    "restricted_load",
    "DEFAULT_SPLIT_RATIOS",
    "assign_split",
]
