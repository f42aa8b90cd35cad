"""Inputs unlike every wafer class, for checking that a model answers them ``unknown``.

Random noise, a blank and a saturated image, a photograph (matplotlib's sample image, shipped
with the package, so nothing is downloaded), and a map on which every die fails (an impossible
fail density: Near-full wafers keep 3-20 % of their dies). All as encoded image bytes, the form
clients send.
"""

from typing import Dict, List

import numpy as np

from spanet.data.classes import FAIL_DIE, OFF_WAFER_DIE
from spanet.data.convention import die_map_to_image
from spanet.data.imageio import encode_png


def unknown_probes(seed: int = 0) -> Dict[str, List[bytes]]:
    """Probe name -> encoded images (PNG, and the photograph's JPEG), a few sizes each."""
    import matplotlib.cbook

    from spanet.data.generator import wafer_mask

    rng = np.random.default_rng(seed)
    all_failing = [np.where(wafer_mask(s, s + 7), FAIL_DIE, OFF_WAFER_DIE).astype(np.uint8) for s in (30, 45)]
    probes: Dict[str, List[bytes]] = {
        "noise": [encode_png(rng.integers(0, 256, size=(s, s), dtype=np.uint8)) for s in (32, 48, 64, 96)],
        "blank": [encode_png(np.zeros((s, s), np.uint8)) for s in (32, 64)],
        "saturated": [encode_png(np.full((s, s), 255, np.uint8)) for s in (32, 64)],
        "all dies failing": [encode_png(die_map_to_image(m)) for m in all_failing],
    }
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        probes["photograph"] = [handle.read()]
    return probes
