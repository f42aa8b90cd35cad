"""Synthetic WM-811K-style wafer maps: the project's embedded default data set.

Follows the recipe of `shared/spec/data.md`: a square N x N die grid whose inscribed circle holds
the dies, background failures at 1-5 %, then each class fails the dies of its polar region with
probability 0.5-0.9. Everything varies per map (grid size per lot, centre jitter, widths, angles,
densities). Vectorised NumPy; deterministic for a seed: maps are made in fixed-size chunks, each
from its own ``(seed, chunk)`` random stream, so a big data set can be streamed chunk by chunk.
"""

import itertools
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from spanet.data.classes import (
    EXCLUDED_MIXES,
    FAIL_DIE,
    NORMAL_CLASS,
    OFF_WAFER_DIE,
    PASS_DIE,
    WAFER_CLASSES,
    mixed_label,
)
from spanet.data.convention import die_maps_to_images
from spanet.data.records import WaferRecord

#: The defect classes (every class but ``none``), in WAFER_CLASSES order: the columns of a multi-hot label.
DEFECT_CLASSES: Tuple[str, ...] = tuple(c for c in WAFER_CLASSES if c != NORMAL_CLASS)

#: Classes that take part in mixed-type maps (as in MixedWM38: Near-full and Random only occur alone).
MIXABLE_CLASSES: Tuple[str, ...] = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Scratch")

#: Labelled class counts of the real WM-811K, for a realistic (imbalanced) class mix.
WM811K_CLASS_COUNTS: Dict[str, int] = {
    "Center": 4294, "Donut": 555, "Edge-Loc": 5189, "Edge-Ring": 9680, "Loc": 3593,
    "Near-full": 149, "Random": 866, "Scratch": 1193, "none": 147431,
}

_SOURCE = "synthetic"
_TWO_PI = 2.0 * np.pi


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that shapes a synthetic data set, in one place. Ranges are (low, high) inclusive-ish."""

    #: Die-grid size range (N for an N x N grid); each lot (one product) gets one size.
    min_size: int = 26
    max_size: int = 64
    #: Relative weight per class name (need not sum to 1); None = the nine classes equally often.
    class_mix: Optional[Dict[str, float]] = None
    #: Share of maps that are mixed-type (2-4 patterns from MIXABLE_CLASSES, EXCLUDED_MIXES left out).
    mixed_fraction: float = 0.0
    #: Wafers per lot (real lots hold 25); wafer ids are the slot numbers 01..lot_size.
    lot_size: int = 25
    lot_prefix: str = "LOT"
    #: Inspection stage / product recorded with every map (None = unknown).
    stage: Optional[str] = "sort"
    background_rate: Tuple[float, float] = (0.01, 0.05)
    region_fail_prob: Tuple[float, float] = (0.5, 0.9)
    #: Maps per random stream; changing it changes the maps, so it is part of the data set's identity.
    chunk_size: int = 1024

    def __post_init__(self) -> None:
        if not 4 <= self.min_size <= self.max_size:
            raise ValueError(f"grid sizes must satisfy 4 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if not 0.0 <= self.mixed_fraction <= 1.0:
            raise ValueError(f"mixed_fraction must be in [0, 1], got {self.mixed_fraction}")
        if self.lot_size < 1 or self.chunk_size < 1:
            raise ValueError("lot_size and chunk_size must be >= 1")
        self.class_probabilities()  # validates class_mix

    def class_probabilities(self) -> np.ndarray:
        """The class mix as probabilities over WAFER_CLASSES (ValueError names a bad class or weight)."""
        if self.class_mix is None:
            return np.full(len(WAFER_CLASSES), 1.0 / len(WAFER_CLASSES))
        unknown = set(self.class_mix) - set(WAFER_CLASSES)
        if unknown:
            raise ValueError(f"class_mix names unknown class(es) {sorted(unknown)}; known: {list(WAFER_CLASSES)}")
        weights = np.array([float(self.class_mix.get(c, 0.0)) for c in WAFER_CLASSES])
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"class_mix weights must be >= 0 with a positive sum, got {self.class_mix}")
        return weights / weights.sum()


def allowed_mixes() -> List[Tuple[str, ...]]:
    """Every mixed-type combination the generator makes: 2-4 MIXABLE_CLASSES, EXCLUDED_MIXES left out."""
    out = []
    for k in (2, 3, 4):
        for combo in itertools.combinations(MIXABLE_CLASSES, k):
            if not any(a in combo and b in combo for a, b in EXCLUDED_MIXES):
                out.append(combo)
    return out


def _u(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return rng.uniform(low, high, size=n).astype(np.float32)[:, None, None]


def _angle_in_arc(theta: np.ndarray, start: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Whether angles `theta` (radians) lie in the arc [start, start + span)."""
    return np.mod(theta - start, _TWO_PI) < span


def _band_width(rng: np.random.Generator, low: float, high: float, n: int, radius: float) -> np.ndarray:
    """A band width as a fraction of R, at least ~1.2 dies so that small grids still get a band."""
    return np.maximum(_u(rng, low, high, n), np.float32(1.2 / radius))


def _region_masks(cls: str, n: int, geo: Dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Boolean (n, N, N) region of class `cls` for n maps, on the normalised polar grid `geo`."""
    x, y, r, theta, radius = geo["x"], geo["y"], geo["r"], geo["theta"], float(geo["radius"])
    if cls == "Center":
        cx, cy = _u(rng, -0.05, 0.05, n), _u(rng, -0.05, 0.05, n)
        return (x - cx) ** 2 + (y - cy) ** 2 <= _u(rng, 0.25, 0.45, n) ** 2
    if cls == "Donut":
        cx, cy = _u(rng, -0.05, 0.05, n), _u(rng, -0.05, 0.05, n)
        rr = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        inner = _u(rng, 0.3, 0.6, n)
        outer = np.maximum(_u(rng, 0.66, 0.8, n), inner + np.float32(1.5 / radius))
        arc = _angle_in_arc(np.arctan2(y - cy, x - cx), _u(rng, 0, _TWO_PI, n), np.deg2rad(_u(rng, 150, 360, n)))
        return (rr >= inner) & (rr <= outer) & arc
    if cls == "Edge-Ring":
        band = r >= 1.0 - _band_width(rng, 0.04, 0.10, n, radius)
        return band & _angle_in_arc(theta, _u(rng, 0, _TWO_PI, n), np.deg2rad(_u(rng, 290, 360, n)))
    if cls == "Edge-Loc":
        band = r >= 1.0 - _band_width(rng, 0.08, 0.22, n, radius)
        return band & _angle_in_arc(theta, _u(rng, 0, _TWO_PI, n), np.deg2rad(_u(rng, 30, 190, n)))
    if cls == "Loc":
        rho, phi = _u(rng, 0.3, 0.65, n), _u(rng, 0, _TWO_PI, n)
        dx, dy = x - rho * np.cos(phi), y - rho * np.sin(phi)
        rot = _u(rng, 0, np.pi, n)
        a = np.maximum(_u(rng, 0.12, 0.28, n), np.float32(1.5 / radius))
        b = a * _u(rng, 0.5, 1.0, n)
        u, v = dx * np.cos(rot) + dy * np.sin(rot), -dx * np.sin(rot) + dy * np.cos(rot)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if cls == "Scratch":
        return _scratch_masks(n, geo, rng)
    if cls in ("Near-full", "Random"):
        return np.broadcast_to(r <= 1.0, (n,) + r.shape[-2:])
    raise ValueError(f"no region defined for class {cls!r}")


def _scratch_masks(n: int, geo: Dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """2-4 joined line segments, 1-3 dies wide, total length 0.2-0.45 N (in units of R: 0.4-0.9)."""
    x, y, radius = geo["x"], geo["y"], float(geo["radius"])
    max_segments = 4
    segments = rng.integers(2, max_segments + 1, size=n)
    total = rng.uniform(0.4, 0.9, size=n)  # 0.2-0.45 N, with R = N / 2
    seg_len = np.where(np.arange(max_segments)[None, :] < segments[:, None], (total / segments)[:, None], 0.0)
    turns = rng.uniform(-np.pi / 3, np.pi / 3, size=(n, max_segments))
    turns[:, 0] = rng.uniform(0, _TWO_PI, size=n)
    heading = np.cumsum(turns, axis=1)
    start_r, start_phi = np.sqrt(rng.uniform(0, 0.35, size=n)), rng.uniform(0, _TWO_PI, size=n)
    steps_x, steps_y = seg_len * np.cos(heading), seg_len * np.sin(heading)
    px = np.concatenate([(start_r * np.cos(start_phi))[:, None], steps_x], axis=1).cumsum(axis=1)
    py = np.concatenate([(start_r * np.sin(start_phi))[:, None], steps_y], axis=1).cumsum(axis=1)
    half_width = (rng.uniform(1.0, 3.0, size=n) / 2.0 + 0.25) / radius
    dist2 = np.full((n,) + x.shape[-2:], np.inf, dtype=np.float32)
    for k in range(max_segments):
        ax, ay = px[:, k, None, None], py[:, k, None, None]
        vx, vy = steps_x[:, k, None, None], steps_y[:, k, None, None]
        vv = np.maximum(vx * vx + vy * vy, 1e-12)
        t = np.clip(((x - ax) * vx + (y - ay) * vy) / vv, 0.0, 1.0)
        d2 = (x - ax - t * vx) ** 2 + (y - ay - t * vy) ** 2
        np.minimum(dist2, d2.astype(np.float32), out=dist2)
    return dist2 <= (half_width ** 2)[:, None, None]


def _grid_geometry(size: int) -> Dict[str, np.ndarray]:
    """Normalised coordinates of an N x N die grid: wafer centre at 0, wafer radius R = N/2 at 1."""
    radius = size / 2.0
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / np.float32(radius)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    r = np.sqrt(x * x + y * y)
    return {"x": x, "y": y, "r": r, "theta": np.arctan2(y, x), "radius": np.float32(radius)}


def generate_die_maps(
    multi_hot: np.ndarray, size: int, rng: np.random.Generator, config: Optional[GeneratorConfig] = None
) -> np.ndarray:
    """Die maps (B, N, N) uint8 with 0 off-wafer / 1 pass / 2 fail for B maps of one grid size.

    `multi_hot` is (B, len(DEFECT_CLASSES)) bool: the patterns of each map (all False = ``none``).
    Overlapping patterns take the larger fail probability.
    """
    config = config or GeneratorConfig()
    multi_hot = np.asarray(multi_hot, dtype=bool)
    count = multi_hot.shape[0]
    geo = _grid_geometry(size)
    on_wafer = geo["r"] <= 1.0
    prob = np.broadcast_to(_u(rng, *config.background_rate, count), (count, size, size)).copy()
    for j, cls in enumerate(DEFECT_CLASSES):
        idx = np.flatnonzero(multi_hot[:, j])
        if idx.size == 0:
            continue
        mask = _region_masks(cls, idx.size, geo, rng)
        if cls == "Near-full":
            p = _u(rng, 0.80, 0.95, idx.size)
        elif cls == "Random":
            p = _u(rng, 0.30, 0.60, idx.size)
        else:
            p = _u(rng, *config.region_fail_prob, idx.size)
        prob[idx] = np.where(mask, np.maximum(prob[idx], p), prob[idx])
    fails = rng.random((count, size, size), dtype=np.float32) < prob
    assert (OFF_WAFER_DIE, PASS_DIE, FAIL_DIE) == (0, 1, 2)  # the arithmetic below relies on this coding
    die_maps = fails.view(np.uint8) + np.uint8(PASS_DIE)
    die_maps *= on_wafer.view(np.uint8)
    return die_maps


def _draw_labels(rng: np.random.Generator, count: int, config: GeneratorConfig) -> np.ndarray:
    """(count, len(DEFECT_CLASSES)) multi-hot labels following the class mix and the mixed fraction."""
    classes = rng.choice(len(WAFER_CLASSES), size=count, p=config.class_probabilities())
    multi_hot = np.zeros((count, len(DEFECT_CLASSES)), dtype=bool)
    single = classes < len(DEFECT_CLASSES)  # 'none' is the last class and has no column
    multi_hot[np.flatnonzero(single), classes[single]] = True
    is_mixed = rng.random(count) < config.mixed_fraction
    mixes = allowed_mixes()
    picks = rng.integers(0, len(mixes), size=count)
    for i in np.flatnonzero(is_mixed):
        multi_hot[i] = [c in mixes[picks[i]] for c in DEFECT_CLASSES]
    return multi_hot


def _lot_grid_size(seed: int, lot_index: int, config: GeneratorConfig) -> int:
    """The die-grid size of a lot: one product per lot, drawn from the lot's own random stream."""
    return int(np.random.default_rng([seed, 1, lot_index]).integers(config.min_size, config.max_size + 1))


def multi_hot_label(row: Sequence[bool]) -> str:
    """The label of a multi-hot row over DEFECT_CLASSES: ``none``, one class, or ``A+B`` for a mix."""
    return mixed_label([c for c, on in zip(DEFECT_CLASSES, row) if on])


def iter_wafer_maps(count: int, seed: int, config: Optional[GeneratorConfig] = None) -> Iterator[WaferRecord]:
    """Yield `count` synthetic WaferRecords (grey-level images), chunk by chunk, deterministically for `seed`."""
    config = config or GeneratorConfig()
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    for chunk_start in range(0, count, config.chunk_size):
        chunk_index = chunk_start // config.chunk_size
        rng = np.random.default_rng([seed, 0, chunk_index])
        n = min(config.chunk_size, count - chunk_start)
        multi_hot = _draw_labels(rng, n, config)
        index = np.arange(chunk_start, chunk_start + n)
        lots = index // config.lot_size
        lot_sizes = {int(lot): _lot_grid_size(seed, int(lot), config) for lot in np.unique(lots)}
        sizes = np.array([lot_sizes[int(lot)] for lot in lots])
        images: List[Optional[np.ndarray]] = [None] * n
        for size in np.unique(sizes):
            members = np.flatnonzero(sizes == size)
            rendered = die_maps_to_images(generate_die_maps(multi_hot[members], int(size), rng, config))
            for m, image in zip(members, rendered):
                images[m] = image
        for k in range(n):
            lot = int(lots[k])
            yield WaferRecord(
                image=images[k],
                label=multi_hot_label(multi_hot[k]),
                lot_id=f"{config.lot_prefix}{seed}-{lot:05d}",
                wafer_id=f"{int(index[k]) % config.lot_size + 1:02d}",
                stage=config.stage,
                source=_SOURCE,
                ref=f"{_SOURCE}#{int(index[k])}",
            )


def generate_wafer_maps(count: int, seed: int, config: Optional[GeneratorConfig] = None, **overrides) -> List[WaferRecord]:
    """Generate `count` synthetic wafer maps for `seed` (see GeneratorConfig; keyword overrides allowed)."""
    if overrides:
        base = config or GeneratorConfig()
        config = GeneratorConfig(**{**base.__dict__, **overrides})
    return list(iter_wafer_maps(count, seed, config))
