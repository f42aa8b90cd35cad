"""The wafer-map-as-image convention: die states (0 off, 1 pass, 2 fail) <-> 8-bit grey levels.

One pixel per die: off-wafer 0, pass 128, fail 255. Users who render their own maps this way get
the same answers from the served model as from the pipeline's readers.
"""

import numpy as np

from spanet.data.classes import (
    FAIL_DIE,
    FAIL_DIE_LEVEL,
    OFF_WAFER_DIE,
    OFF_WAFER_LEVEL,
    PASS_DIE,
    PASS_DIE_LEVEL,
)

_DIE_TO_LEVEL = np.zeros(256, dtype=np.uint8)
_DIE_TO_LEVEL[[OFF_WAFER_DIE, PASS_DIE, FAIL_DIE]] = [OFF_WAFER_LEVEL, PASS_DIE_LEVEL, FAIL_DIE_LEVEL]
_LEVEL_TO_DIE = np.zeros(256, dtype=np.uint8)
_LEVEL_TO_DIE[[OFF_WAFER_LEVEL, PASS_DIE_LEVEL, FAIL_DIE_LEVEL]] = [OFF_WAFER_DIE, PASS_DIE, FAIL_DIE]


def check_die_map(die_map: np.ndarray) -> str:
    """Return "" if `die_map` is a usable 2-D map of 0/1/2 die states, else the reason it is not."""
    arr = np.asarray(die_map)
    if arr.ndim != 2:
        return f"wafer map must be 2-D, got shape {arr.shape}"
    if arr.size == 0:
        return "empty wafer map (no dies)"
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        return f"wafer map has non-numeric dtype {arr.dtype}"
    bad = ~np.isin(arr, (OFF_WAFER_DIE, PASS_DIE, FAIL_DIE))
    if bad.any():
        values = sorted({float(v) if np.issubdtype(arr.dtype, np.floating) else int(v) for v in arr[bad][:1000]})
        return f"unknown die value(s) {values[:5]} (expected 0 off-wafer, 1 pass, 2 fail)"
    if not (arr != OFF_WAFER_DIE).any():
        return "empty wafer map (every die is off-wafer)"
    return ""


def die_map_to_image(die_map: np.ndarray) -> np.ndarray:
    """Render a 0/1/2 die map as a uint8 grey image (0/128/255). Raises ValueError if the map is unusable."""
    reason = check_die_map(die_map)
    if reason:
        raise ValueError(reason)
    return _DIE_TO_LEVEL[np.asarray(die_map).astype(np.uint8)]


def die_maps_to_images(die_maps: np.ndarray) -> np.ndarray:
    """Render die maps known to hold only 0/1/2 (e.g. freshly generated) without checking them."""
    return _DIE_TO_LEVEL[die_maps]


def image_to_die_map(image: np.ndarray) -> np.ndarray:
    """Invert `die_map_to_image`: a 0/128/255 grey image back to 0/1/2 die states (ValueError otherwise)."""
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"a wafer-map image must be 2-D uint8, got shape {arr.shape} dtype {arr.dtype}")
    bad = ~np.isin(arr, (OFF_WAFER_LEVEL, PASS_DIE_LEVEL, FAIL_DIE_LEVEL))
    if bad.any():
        raise ValueError(f"grey level(s) {sorted(set(arr[bad].tolist()))[:5]} are not 0/128/255 wafer-map levels")
    return _LEVEL_TO_DIE[arr]
