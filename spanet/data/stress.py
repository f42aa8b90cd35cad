"""A second, deliberately different wafer-map recipe: the stress set a model is judged on.

`spanet.data.generator` (the training data) draws hard-edged regions on a die grid in wafer
coordinates. This recipe shares no code or ranges with it. It works like a fab does, in
millimetres: a wafer of 150, 200 or 300 mm is diced into rectangular dies of 3-15 mm, a die
exists when its centre lies inside the wafer less an edge exclusion (so grids and their rims
differ from an inscribed ellipse), killer defects land as a Poisson process, clean wafers can
lose a few edge dies, and every pattern is a *soft density field* (Gaussian bumps, radial ring
profiles, exponential edge fall-off, Bezier-curve scratches that break up) rather than a region
with a hard outline. A model that learnt the generator's templates rather than the patterns does
badly here; the cross-recipe benchmark (``benchmarks/bench_cross_recipe.py``) reports it.
"""

from typing import Iterator, List, Optional, Tuple

import numpy as np

from spanet.data.classes import FAIL_DIE, NORMAL_CLASS, OFF_WAFER_DIE, PASS_DIE, WAFER_CLASSES
from spanet.data.convention import die_maps_to_images
from spanet.data.records import WaferRecord

_SOURCE = "stress"
#: Wafer diameters in mm and how often each is drawn.
_DIAMETERS_MM = ((150.0, 0.2), (200.0, 0.4), (300.0, 0.4))


def _die_grid(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(on-wafer mask, x, y, edge) of a diced wafer: x / y the die centres in units of the wafer
    radius, edge the radius inside which die centres lie (the wafer less its edge exclusion)."""
    diameter = rng.choice([d for d, _ in _DIAMETERS_MM], p=[w for _, w in _DIAMETERS_MM])
    die_w = rng.uniform(3.0, 12.0)
    die_h = die_w * float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # rectangular dies, up to 2:1
    if diameter / max(die_w, die_h) < 8:  # at least 8 dies across
        die_w, die_h = die_w * 0.5, die_h * 0.5
    cols, rows = int(np.ceil(diameter / die_w)), int(np.ceil(diameter / die_h))
    exclusion = rng.uniform(0.0, 5.0)  # mm of edge exclusion
    radius = diameter / 2.0
    xs = (np.arange(cols) + 0.5) * die_w - cols * die_w / 2.0
    ys = (np.arange(rows) + 0.5) * die_h - rows * die_h / 2.0
    x, y = np.meshgrid(xs / radius, ys / radius)
    mask = np.hypot(x, y) <= (radius - exclusion) / radius
    # Drop empty outer rows / columns so that the map is the wafer's bounding box.
    keep_r, keep_c = mask.any(axis=1), mask.any(axis=0)
    return mask[keep_r][:, keep_c], x[keep_r][:, keep_c], y[keep_r][:, keep_c], (radius - exclusion) / radius


def _gauss(d2: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-d2 / (2.0 * sigma * sigma))


def _bezier_scratch(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, die: float) -> np.ndarray:
    """Fail density of a quadratic-Bezier scratch 0.6-2.5 dies thick that breaks up along its length."""
    start = rng.uniform(-0.6, 0.6, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.35, 1.3)
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    bend = rng.normal(0.0, 0.25 * length, size=2)
    control = (start + end) / 2.0 + bend
    t = np.linspace(0.0, 1.0, max(20, int(length / (0.3 * die))))[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    gaps = rng.random(len(t)) < rng.uniform(0.0, 0.25)  # broken stretches
    curve = curve[~gaps]
    if len(curve) == 0:
        return np.zeros_like(x)
    half = rng.uniform(0.3, 1.25) * die
    d2 = np.min((x[..., None] - curve[:, 0]) ** 2 + (y[..., None] - curve[:, 1]) ** 2, axis=-1)
    return rng.uniform(0.6, 1.0) * (d2 <= half * half)


def _density(label: str, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, die: float, edge: float) -> np.ndarray:
    """The fail probability field of one pattern on die centres (x, y) (wafer radius 1; outermost die at `edge`)."""
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    peak = rng.uniform(0.5, 1.0)
    if label == "Center":
        cx, cy = rng.normal(0.0, 0.05, size=2)
        return peak * _gauss((x - cx) ** 2 + (y - cy) ** 2, max(rng.uniform(0.1, 0.28), 1.2 * die))
    if label == "Donut":
        r0, width = rng.uniform(0.3, 0.65), max(rng.uniform(0.04, 0.12), 0.8 * die)
        gap_centre, gap = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, np.pi * 0.8)
        open_part = np.abs(np.angle(np.exp(1j * (theta - gap_centre)))) < gap / 2
        return peak * _gauss((r - r0) ** 2, width) * ~open_part
    if label in ("Edge-Ring", "Edge-Loc"):
        fall = max(rng.uniform(0.03, 0.15), 1.5 * die)
        profile = max(peak, 0.7) * np.exp(-np.clip(edge - r, 0, None) / fall)
        if label == "Edge-Ring":
            return profile * (0.75 + 0.25 * np.cos(theta * rng.integers(1, 4) + rng.uniform(0, 6.3)))
        centre, spread = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(12.0, 50.0))
        return profile * _gauss(np.angle(np.exp(1j * (theta - centre))) ** 2, spread)
    if label == "Loc":
        dist, phi = rng.uniform(0.2, 0.75), rng.uniform(0, 2 * np.pi)
        cx, cy = dist * np.cos(phi), dist * np.sin(phi)
        sx, sy = max(rng.uniform(0.05, 0.18), 1.3 * die), max(rng.uniform(0.05, 0.18), 1.3 * die)
        return peak * np.exp(-((x - cx) ** 2 / (2 * sx * sx) + (y - cy) ** 2 / (2 * sy * sy)))
    if label == "Scratch":
        return _bezier_scratch(rng, x, y, die)
    if label == "Near-full":
        return np.clip(rng.uniform(0.75, 0.98) + rng.uniform(-0.1, 0.05) * r, 0, 1)
    if label == "Random":
        gx, gy = rng.normal(0, 0.08, size=2)
        return np.clip(rng.uniform(0.22, 0.55) + gx * x + gy * y, 0, 1)
    raise ValueError(f"no stress pattern for class {label!r}")


def stress_die_map(label: str, rng: np.random.Generator) -> np.ndarray:
    """One die map (0 off / 1 pass / 2 fail) of class ``label`` by the stress recipe."""
    mask, x, y, edge = _die_grid(rng)
    die = 2.0 / max(mask.shape)
    # Background: Poisson killer defects, and on some wafers a few lost edge dies.
    on = np.flatnonzero(mask)
    fails = np.zeros(mask.shape, dtype=bool)
    hits = rng.poisson(rng.uniform(0.0, 0.05) * on.size)
    fails.flat[rng.choice(on, size=min(hits, on.size), replace=True)] = True
    if rng.random() < 0.3:
        rim = mask & (np.hypot(x, y) >= np.hypot(x, y)[mask].max() - 1.5 * die)
        fails |= rim & (rng.random(mask.shape) < rng.uniform(0.0, 0.12))
    if label != NORMAL_CLASS:
        # A pattern is at least 5 failing dies: fewer is indistinguishable from background, i.e. label noise.
        for _ in range(20):
            pattern = mask & (rng.random(mask.shape) < _density(label, rng, x, y, die, edge))
            if pattern.sum() >= 5:
                break
        fails |= pattern
    die_map = np.where(fails, FAIL_DIE, PASS_DIE).astype(np.uint8)
    die_map[~mask] = OFF_WAFER_DIE
    return die_map


def iter_stress_maps(count: int, seed: int, class_mix: Optional[dict] = None) -> Iterator[WaferRecord]:
    """`count` stress-recipe WaferRecords, deterministically for `seed`; classes equally often by default."""
    rng = np.random.default_rng([seed, 7919])
    names = list(WAFER_CLASSES)
    weights = np.array([float((class_mix or {}).get(c, 1.0 if class_mix is None else 0.0)) for c in names])
    if weights.sum() <= 0:
        raise ValueError(f"class_mix must give some class a positive weight, got {class_mix}")
    labels = rng.choice(names, size=count, p=weights / weights.sum())
    for i, label in enumerate(labels):
        image = die_maps_to_images(stress_die_map(str(label), rng))
        yield WaferRecord(
            image=image,
            label=str(label),
            lot_id=f"STRESS{seed}-{i:06d}",
            wafer_id="01",
            stage="stress",
            source=_SOURCE,
            ref=f"{_SOURCE}#{i}",
        )


def generate_stress_maps(count: int, seed: int, class_mix: Optional[dict] = None) -> List[WaferRecord]:
    """A list of :func:`iter_stress_maps`."""
    return list(iter_stress_maps(count, seed, class_mix))
