"""Choosing a reader: format names, auto-detection, and construction from JSON-able options."""

import os
from typing import Any, Dict, Iterator, Mapping, Optional, Type

from spanet.data.formats.base import Reader
from spanet.data.formats.g85 import G85_EXTENSIONS, G85Reader
from spanet.data.formats.image_folder import IMAGE_EXTENSIONS, ImageFolderReader
from spanet.data.formats.mixedwm38 import MixedWM38Reader
from spanet.data.formats.wm811k import WM811KReader
from spanet.data.records import DataInputError, ReadResult

#: Format name -> reader class. ``auto`` picks one of these from the path.
READERS: Dict[str, Type[Reader]] = {
    ImageFolderReader.name: ImageFolderReader,
    MixedWM38Reader.name: MixedWM38Reader,
    G85Reader.name: G85Reader,
    WM811KReader.name: WM811KReader,
}
FORMATS = tuple(READERS) + ("auto",)


def detect_format(path: str) -> str:
    """Guess the format of `path`: a ``.npz`` / ``.pkl`` file (or a folder holding one), else a folder
    of G85 files or images."""
    if not os.path.exists(path):
        raise DataInputError(f"input {path!r} does not exist")
    if os.path.isfile(path):
        lower = path.lower()
        if lower.endswith(".npz"):
            return MixedWM38Reader.name
        if lower.endswith((".pkl", ".pickle")):
            return WM811KReader.name
        raise DataInputError(f"cannot tell the format of file {path!r}: expected .npz, .pkl or a folder")
    top = [n.lower() for n in os.listdir(path)]
    if any(n.endswith(".npz") for n in top):
        return MixedWM38Reader.name
    if any(n.endswith((".pkl", ".pickle")) for n in top):
        return WM811KReader.name
    counts = {G85Reader.name: 0, ImageFolderReader.name: 0}
    for _, _, files in os.walk(path):
        for name in files:
            lower = name.lower()
            if lower.endswith(G85_EXTENSIONS):
                counts[G85Reader.name] += 1
            elif lower.endswith(IMAGE_EXTENSIONS):
                counts[ImageFolderReader.name] += 1
    if not any(counts.values()):
        raise DataInputError(f"folder {path!r} holds no image (.png/.jpg) nor G85 (.g85/.xml/.map) file")
    return max(counts, key=lambda k: counts[k])


def make_reader(data_format: str, path: Optional[str] = None, options: Optional[Mapping[str, Any]] = None) -> Reader:
    """Build the reader for `data_format` (``auto`` needs `path`) with keyword `options`.

    Raises ValueError naming an unknown format or option.
    """
    if data_format == "auto":
        if path is None:
            raise ValueError("data_format 'auto' needs the data path to detect the format")
        data_format = detect_format(path)
    if data_format not in READERS:
        raise ValueError(f"unknown data format {data_format!r}; expected one of {list(FORMATS)}")
    cls = READERS[data_format]
    try:
        return cls(**dict(options or {}))
    except TypeError as exc:
        raise ValueError(f"bad option for the {data_format!r} reader: {exc}") from None


def read_records(path: str, data_format: str = "auto", **options: Any) -> Iterator[ReadResult]:
    """Read every record of `path` in this process (WaferRecord or RejectedRecord, in input order)."""
    return make_reader(data_format, path, options).read(path)
