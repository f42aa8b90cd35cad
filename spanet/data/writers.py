"""Writing wafer-map records in the on-disk formats users have (what ``spanet generate`` produces)."""

from typing import Callable, Dict, Iterable, Optional

from spanet.data.formats.g85 import write_g85
from spanet.data.formats.image_folder import write_image_folder
from spanet.data.formats.mixedwm38 import write_mixedwm38
from spanet.data.records import WaferRecord

#: Output format name -> writer(records, out, total, show_progress) -> count.
WRITERS: Dict[str, Callable[..., int]] = {
    "png": write_image_folder,
    "npz": write_mixedwm38,
    "g85": lambda records, out, **kw: write_g85(records, out, form="ascii", **kw),
    "g85-xml": lambda records, out, **kw: write_g85(records, out, form="xml", **kw),
}


def write_dataset(
    records: Iterable[WaferRecord], out: str, data_format: str, total: Optional[int] = None, show_progress: bool = False
) -> int:
    """Write `records` to `out` (a folder; a file path for ``npz``) in `data_format`; returns the count.

    All or nothing: nothing appears at `out` unless every record was written.
    """
    if data_format not in WRITERS:
        raise ValueError(f"unknown output format {data_format!r}; expected one of {list(WRITERS)}")
    return WRITERS[data_format](records, out, total=total, show_progress=show_progress)
