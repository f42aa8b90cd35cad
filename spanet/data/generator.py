"""Synthetic WM-811K-style wafer maps: the project's embedded default data set.

Follows the recipe of `shared/spec/data.md`, widened so that a model trained on it has seen the
variety of real maps: an N x M die grid (often non-square, because dies are rectangular) whose
inscribed ellipse holds the dies; background failures, uniform or clustered; then each class fails
the dies of its region with a probability that itself varies (faint patterns are real). Every
range is a field of :class:`PatternRanges`, with the reason for it, in one place.

Geometry is drawn in *wafer coordinates*: u (columns) and v (rows) scaled so that the wafer is the
unit disc whatever the grid's aspect ratio, which is what a circular wafer diced into rectangular
dies looks like. Widths that real maps state in dies (a scratch one die wide, a ring at least one
die thick) are converted per grid. Vectorised NumPy; deterministic for a seed: maps are made in
fixed-size chunks, each from its own ``(seed, chunk)`` random stream, so a big data set can be
streamed chunk by chunk.
"""

import itertools
from dataclasses import dataclass, field, fields
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
    "Center": 4294,
    "Donut": 555,
    "Edge-Loc": 5189,
    "Edge-Ring": 9680,
    "Loc": 3593,
    "Near-full": 149,
    "Random": 866,
    "Scratch": 1193,
    "none": 147431,
}

#: Largest grid side the generator accepts: WM-811K's largest map is 300 x 202; bigger would only
#: cost memory (a chunk of 1,024 maps of 1,000 x 1,000 dies is 4 GB of float32 probabilities).
MAX_GRID_SIDE = 512

#: Changes whenever the recipe's code changes what a configuration draws (2026-12-03: regions too
#: small to see are redrawn; 2026-12-04: so are patterns drawn too faint), so that data made by older
#: code is not taken for today's.
RECIPE_VERSION = "2026-12-04"

_SOURCE = "synthetic"
_TWO_PI = 2.0 * np.pi

Range = Tuple[float, float]


@dataclass(frozen=True)
class PatternRanges:
    """Every range the generator draws from, and why. Uniform draws unless a field says otherwise.

    Widths and radii are fractions of the wafer radius R (the wafer is the unit disc in wafer
    coordinates) unless the name ends in ``_dies``. The ranges deliberately overlap what real maps
    show at their extremes (thin, faint, partial): a model that never saw a one-die scratch or a
    faint ring calls it ``none``.
    """

    # --- the die grid: one product, so one grid, per lot ---
    #: Typical grid side (geometric mean of rows and columns): most WM-811K maps are 25-50 dies a side.
    typical_side: Range = (25.0, 50.0)
    #: Share of lots whose side is drawn log-uniformly from the config's whole [min_size, max_size]
    #: span instead: real shapes run from 6 x 21 to 300 x 202.
    wide_side_share: float = 0.35
    #: Aspect ratio (columns / rows), log-uniform: rectangular dies make grids like 32 x 29 or 49 x 39.
    aspect: Range = (0.6, 1.67)
    #: Share of lots with a square grid (26 x 26 is among the commonest WM-811K shapes).
    square_share: float = 0.3

    # --- background failures (every class, and all of ``none``) ---
    #: Scattered fail rate: clean wafers still lose 0-6 % of dies at random.
    background_rate: Range = (0.0, 0.06)
    #: Share of maps whose background failures also come in small clusters (particles, probe marks):
    #: the ``none`` maps that naive models read as Loc or Scratch.
    clustered_share: float = 0.3
    #: Clusters per clustered map, and their radius in dies: 1-5 dies each, small enough not to be a
    #: Loc blob or a short scratch (more and bigger clusters drowned faint patterns: label noise).
    cluster_count: Range = (1, 3)
    cluster_radius_dies: Range = (0.5, 1.2)

    # --- how strongly a pattern's region fails ---
    #: Fail probability inside a pattern's region: faint (0.3) to solid. Scratches use their own.
    region_fail_prob: Range = (0.3, 0.95)
    #: Share of Center, Loc and Edge-Loc patterns that are partial: a random half-plane of the region is
    #: dropped. (Rings and donuts are partial through their arcs; a ring cut in half would be an Edge-Loc.)
    partial_share: float = 0.2
    #: A pattern fails at least this many dies on average (its fail probability is raised where its
    #: region is small): fewer would be indistinguishable from background noise, i.e. label noise.
    min_pattern_fails: float = 12.0
    #: ... so its region (scratches: see below) must hold at least this many on-wafer dies: a region is redrawn (up to
    #: ``region_redraws`` times, then drawn whole, without the partial cut) until it does. Without
    #: this, a thin edge band, an arc or a half-plane cut left regions of 0-3 dies on small grids:
    #: "defective" maps nobody could tell from clean ones (measured: most of the model's confident
    #: misses on the test split).
    min_region_dies: float = 14.0
    region_redraws: int = 20
    #: ... and at least this much above the map's scattered background rate: a "faint" pattern at 0.3
    #: on a wafer losing 6 % of its dies anyway is not visible, and a label nobody could see is noise
    #: (measured: such maps were most of the test misses and false alarms).
    min_pattern_contrast: float = 0.4
    #: The rules above hold on average; a drawn map must reach ``realised_share`` of them too (of
    #: ``min_pattern_fails``, or of its region's dies where fewer, and of ``min_pattern_contrast``), or its
    #: region's dies are redrawn, up to ``region_redraws`` times, then fail solid. Without this, chance
    #: left 0.8 % of the default data's localised patterns as a handful of scattered fails, and every
    #: model trained on it missed the same test maps with P(normal) > 0.99: a Loc that no eye can find
    #: in 3 % background failures, a ring of a few fails on a 20 x 17 grid.
    realised_share: float = 0.75

    # --- the classes ---
    #: Center: a disc (slightly elliptic) near the centre.
    center_radius: Range = (0.12, 0.5)
    center_offset: Range = (0.0, 0.12)
    #: Donut: a ring around the centre, thin to thick, closed or open (arc).
    donut_inner: Range = (0.15, 0.6)
    donut_width: Range = (0.06, 0.35)
    donut_arc_deg: Range = (150.0, 360.0)
    #: Edge-Ring: an outer band of widely varying width, (nearly) all the way round.
    edge_ring_width: Range = (0.03, 0.2)
    edge_ring_arc_deg: Range = (270.0, 360.0)
    #: Edge-Loc: an outer band over part of the rim, sometimes reaching well inside.
    edge_loc_width: Range = (0.05, 0.35)
    edge_loc_arc_deg: Range = (20.0, 190.0)
    #: Loc: an elliptic blob anywhere between centre and edge; semi-axes at least ``loc_min_dies``.
    loc_distance: Range = (0.2, 0.8)
    loc_radius: Range = (0.08, 0.3)
    loc_min_dies: float = 2.5
    #: Scratch: a line of total length 0.2-0.6 of the wafer's diameter (and at least
    #: ``scratch_min_dies`` dies: shorter is a cluster, not a scratch), straight, bent or curved.
    scratch_length: Range = (0.2, 0.6)
    scratch_min_dies: float = 6.0
    #: ... and at least this share of the grid's side (geometric mean) in on-wafer dies: a six-die line
    #: on a 100-die grid losing 6 % of its dies at random is a chance alignment, not a scratch.
    scratch_min_share: float = 0.1
    #: Scratch width in dies, with the weights of 1, 2 and 3 dies: very often a single die.
    scratch_width_weights: Tuple[float, float, float] = (0.6, 0.25, 0.15)
    #: Shares of straight, bent (one or two kinks) and curved (constant curvature) scratches.
    scratch_shape_weights: Tuple[float, float, float] = (0.35, 0.35, 0.3)
    #: A scratch's dies fail with this probability (scratches are continuous but can break up).
    scratch_fail_prob: Range = (0.8, 1.0)
    #: Near-full and Random: fail rates over the whole wafer.
    near_full_rate: Range = (0.8, 0.97)
    random_rate: Range = (0.25, 0.6)

    def describe(self) -> List[Tuple[str, str]]:
        """(field, value) rows for documentation and reports."""
        return [(f.name, str(getattr(self, f.name))) for f in fields(self)]


#: The project's default synthetic class weights: ``none`` four times as common as each defect class
#: (the embedded default data and the experiments; ``GeneratorConfig.class_mix`` None is uniform).
DEFAULT_CLASS_MIX: Tuple[Tuple[str, float], ...] = ((NORMAL_CLASS, 4.0),) + tuple(
    (c, 1.0) for c in WAFER_CLASSES if c != NORMAL_CLASS
)


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that shapes a synthetic data set, in one place."""

    #: Bounds on each side of the die grid (rows and columns both lie in [min_size, max_size]);
    #: equal bounds give one square grid (as MixedWM38's 52 x 52).
    min_size: int = 12
    max_size: int = 120
    #: Relative weight per class name (need not sum to 1); None = the nine classes equally often.
    class_mix: Optional[Dict[str, float]] = None
    #: Share of maps that are mixed-type (2-4 patterns from MIXABLE_CLASSES, EXCLUDED_MIXES left out).
    mixed_fraction: float = 0.0
    #: Wafers per lot (real lots hold 25); wafer ids are the slot numbers 01..lot_size.
    lot_size: int = 25
    lot_prefix: str = "LOT"
    #: Inspection stage / product recorded with every map (None = unknown).
    stage: Optional[str] = "sort"
    ranges: PatternRanges = field(default_factory=PatternRanges)
    #: Maps per random stream; changing it changes the maps, so it is part of the data set's identity.
    chunk_size: int = 1024

    def __post_init__(self) -> None:
        if not 4 <= self.min_size <= self.max_size:
            raise ValueError(f"grid sizes must satisfy 4 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.max_size > MAX_GRID_SIDE:
            raise ValueError(
                f"max_size must be at most {MAX_GRID_SIDE} dies (WM-811K's largest map is 300 x 202), "
                f"got {self.max_size}"
            )
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


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Wafer coordinates of an N x M die grid: u across columns, v down rows, the wafer the unit disc."""

    rows: int
    cols: int

    @property
    def die_u(self) -> float:
        """One die's width in wafer coordinates (R = 1)."""
        return 2.0 / self.cols

    @property
    def die_v(self) -> float:
        return 2.0 / self.rows

    @property
    def die(self) -> float:
        """The larger die dimension: a width of k dies is at least k * die in every direction."""
        return max(self.die_u, self.die_v)

    def coordinates(self) -> Dict[str, np.ndarray]:
        u = (np.arange(self.cols, dtype=np.float32) - (self.cols - 1) / 2.0) / np.float32(self.cols / 2.0)
        v = (np.arange(self.rows, dtype=np.float32) - (self.rows - 1) / 2.0) / np.float32(self.rows / 2.0)
        vv, uu = np.meshgrid(v, u, indexing="ij")
        return {"u": uu, "v": vv, "r": np.sqrt(uu * uu + vv * vv), "theta": np.arctan2(vv, uu)}


def wafer_mask(rows: int, cols: int) -> np.ndarray:
    """The dies of an N x M grid that lie on the wafer: the ellipse inscribed in the grid."""
    return Grid(rows, cols).coordinates()["r"] <= 1.0


def _u(rng: np.random.Generator, span: Sequence[float], n: int) -> np.ndarray:
    """n uniform draws from ``span``, shaped (n, 1, 1) to broadcast over a grid."""
    return rng.uniform(span[0], span[1], size=n).astype(np.float32)[:, None, None]


def _in_arc(theta: np.ndarray, start: np.ndarray, span_deg: np.ndarray) -> np.ndarray:
    """Whether angles `theta` (radians) lie in the arc [start, start + span)."""
    return np.mod(theta - start, _TWO_PI) < np.deg2rad(span_deg)


def _partial(mask: np.ndarray, geo: Dict[str, np.ndarray], rng: np.random.Generator, share: float) -> np.ndarray:
    """Drops a random half-plane through a random point of the region for ``share`` of the maps."""
    n = mask.shape[0]
    chosen = rng.random(n) < share
    if not chosen.any():
        return mask
    angle = _u(rng, (0.0, _TWO_PI), n)
    offset = _u(rng, (-0.3, 0.3), n)
    keep = geo["u"] * np.cos(angle) + geo["v"] * np.sin(angle) < offset + 0.4
    return np.where(chosen[:, None, None], mask & keep, mask)


def _center(n, geo, grid, rng, ranges: PatternRanges):
    offset, direction = _u(rng, ranges.center_offset, n), _u(rng, (0.0, _TWO_PI), n)
    cu, cv = offset * np.cos(direction), offset * np.sin(direction)
    radius = np.maximum(_u(rng, ranges.center_radius, n), np.float32(1.5 * grid.die))
    squash = _u(rng, (0.8, 1.0), n)
    return ((geo["u"] - cu) / radius) ** 2 + ((geo["v"] - cv) / (radius * squash)) ** 2 <= 1.0


def _donut(n, geo, grid, rng, ranges: PatternRanges):
    offset, direction = _u(rng, (0.0, 0.08), n), _u(rng, (0.0, _TWO_PI), n)
    du, dv = geo["u"] - offset * np.cos(direction), geo["v"] - offset * np.sin(direction)
    rr = np.sqrt(du * du + dv * dv)
    inner = _u(rng, ranges.donut_inner, n)
    width = np.maximum(_u(rng, ranges.donut_width, n), np.float32(1.2 * grid.die))
    outer = np.minimum(inner + width, np.float32(0.92))
    arc = _in_arc(np.arctan2(dv, du), _u(rng, (0.0, _TWO_PI), n), _u(rng, ranges.donut_arc_deg, n))
    return (rr >= inner) & (rr <= outer) & arc


def _edge_band(n, geo, grid, rng, width: Range, arc_deg: Range):
    band = np.maximum(_u(rng, width, n), np.float32(1.05 * grid.die))
    # An arc at least 6 dies long, so that a narrow Edge-Loc on a small grid is still a pattern.
    arc_deg = np.maximum(_u(rng, arc_deg, n), np.float32(np.rad2deg(6.0 * grid.die)))
    # The band's inner edge wobbles a little around the circle, as real edge rings do.
    wobble = band * 0.25 * np.sin(geo["theta"] * rng.integers(1, 4) + _u(rng, (0.0, _TWO_PI), n))
    inside = geo["r"] >= 1.0 - band + wobble
    return inside & _in_arc(geo["theta"], _u(rng, (0.0, _TWO_PI), n), np.minimum(arc_deg, 360.0))


def _loc(n, geo, grid, rng, ranges: PatternRanges):
    distance, direction = _u(rng, ranges.loc_distance, n), _u(rng, (0.0, _TWO_PI), n)
    du, dv = geo["u"] - distance * np.cos(direction), geo["v"] - distance * np.sin(direction)
    a = np.maximum(_u(rng, ranges.loc_radius, n), np.float32(ranges.loc_min_dies * grid.die))
    b = np.maximum(a * _u(rng, (0.45, 1.0), n), np.float32(ranges.loc_min_dies * grid.die))
    rot = _u(rng, (0.0, np.pi), n)
    x, y = du * np.cos(rot) + dv * np.sin(rot), -du * np.sin(rot) + dv * np.cos(rot)
    # A soft, irregular outline: the radius varies with the angle around the blob's centre.
    lumps = 1.0 + 0.2 * np.sin(3.0 * np.arctan2(y, x) + _u(rng, (0.0, _TWO_PI), n))
    return (x / a) ** 2 + (y / b) ** 2 <= lumps**2


def scratch_path(
    rng: np.random.Generator, length: float, shape: int, start: Tuple[float, float], step: float
) -> np.ndarray:
    """Points (K, 2) in wafer coordinates along a scratch of ``length``: shape 0 straight, 1 bent, 2 curved."""
    count = max(2, int(np.ceil(length / step)) + 1)
    heading = np.full(count - 1, rng.uniform(0.0, _TWO_PI))
    if shape == 1:  # one or two kinks of 15-70 degrees
        for kink in np.sort(
            rng.choice(np.arange(1, count - 1), size=min(rng.integers(1, 3), count - 2), replace=False)
        ):
            heading[kink:] += rng.choice([-1.0, 1.0]) * np.deg2rad(rng.uniform(15.0, 70.0))
    elif shape == 2:  # constant curvature: turns 30-150 degrees over its length
        total_turn = rng.choice([-1.0, 1.0]) * np.deg2rad(rng.uniform(30.0, 150.0))
        heading = heading + np.linspace(0.0, total_turn, count - 1)
    steps = np.stack([np.cos(heading), np.sin(heading)], axis=1) * (length / (count - 1))
    return np.concatenate([[start], np.asarray(start) + np.cumsum(steps, axis=0)])


def _scratch(n, geo, grid, rng, ranges: PatternRanges):
    """Scratches rasterised in die space: a die fails when its centre is within half the width of the path."""
    masks = np.zeros((n,) + geo["u"].shape, dtype=bool)
    widths = rng.choice(
        [1, 2, 3], size=n, p=np.asarray(ranges.scratch_width_weights) / sum(ranges.scratch_width_weights)
    )
    shapes = rng.choice(3, size=n, p=np.asarray(ranges.scratch_shape_weights) / sum(ranges.scratch_shape_weights))
    # Die-space coordinates (column, row) of every die, to measure distances in dies.
    cols = (geo["u"] + 1.0) * grid.cols / 2.0
    rows = (geo["v"] + 1.0) * grid.rows / 2.0
    step = 0.5 * min(grid.die_u, grid.die_v)
    for k in range(n):
        length = max(2.0 * rng.uniform(*ranges.scratch_length), ranges.scratch_min_dies * grid.die)  # in units of R
        start_r, start_phi = 0.75 * np.sqrt(rng.uniform()), rng.uniform(0.0, _TWO_PI)
        path = scratch_path(
            rng, length, int(shapes[k]), (start_r * np.cos(start_phi), start_r * np.sin(start_phi)), step
        )
        pc = (path[:, 0] + 1.0) * grid.cols / 2.0
        pr = (path[:, 1] + 1.0) * grid.rows / 2.0
        half = widths[k] / 2.0
        # Only dies near the path's bounding box can be hit.
        lo_c, hi_c = int(max(0, np.floor(pc.min() - half - 1))), int(min(grid.cols, np.ceil(pc.max() + half + 1)))
        lo_r, hi_r = int(max(0, np.floor(pr.min() - half - 1))), int(min(grid.rows, np.ceil(pr.max() + half + 1)))
        if lo_c >= hi_c or lo_r >= hi_r:
            continue
        dc = cols[lo_r:hi_r, lo_c:hi_c, None] - pc[None, None, :]
        dr = rows[lo_r:hi_r, lo_c:hi_c, None] - pr[None, None, :]
        near = (np.abs(dc) < half + 1e-6) & (np.abs(dr) < half + 1e-6)
        masks[k, lo_r:hi_r, lo_c:hi_c] = near.any(axis=2)
    return masks


#: Classes whose patterns may be partial (see PatternRanges.partial_share).
_PARTIAL_CLASSES = ("Center", "Loc", "Edge-Loc")

_REGIONS = {
    "Center": _center,
    "Donut": _donut,
    "Edge-Ring": lambda n, geo, grid, rng, ranges: _edge_band(
        n, geo, grid, rng, ranges.edge_ring_width, ranges.edge_ring_arc_deg
    ),
    "Edge-Loc": lambda n, geo, grid, rng, ranges: _edge_band(
        n, geo, grid, rng, ranges.edge_loc_width, ranges.edge_loc_arc_deg
    ),
    "Loc": _loc,
    "Scratch": _scratch,
}


def _background(
    count: int, grid: Grid, geo, rng: np.random.Generator, ranges: PatternRanges
) -> Tuple[np.ndarray, np.ndarray]:
    """(count, N, M) fail probabilities of the background (a uniform rate, plus small clusters on some
    maps), and each map's uniform rate, shaped (count, 1, 1)."""
    rate = _u(rng, ranges.background_rate, count)
    prob = np.broadcast_to(rate, (count,) + geo["u"].shape).copy()
    clustered = np.flatnonzero(rng.random(count) < ranges.clustered_share)
    cols = (geo["u"] + 1.0) * grid.cols / 2.0
    rows = (geo["v"] + 1.0) * grid.rows / 2.0
    for i in clustered:
        for _ in range(int(rng.integers(int(ranges.cluster_count[0]), int(ranges.cluster_count[1]) + 1))):
            r, phi = np.sqrt(rng.uniform()) * 0.95, rng.uniform(0.0, _TWO_PI)
            cc, cr = (r * np.cos(phi) + 1.0) * grid.cols / 2.0, (r * np.sin(phi) + 1.0) * grid.rows / 2.0
            radius = rng.uniform(*ranges.cluster_radius_dies)
            near = (cols - cc) ** 2 + (rows - cr) ** 2 <= radius**2
            prob[i] = np.where(near, np.maximum(prob[i], rng.uniform(0.5, 0.9)), prob[i])
    return prob, rate


def generate_die_maps(
    multi_hot: np.ndarray, size, rng: np.random.Generator, config: Optional[GeneratorConfig] = None
) -> np.ndarray:
    """Die maps (B, N, M) uint8 with 0 off-wafer / 1 pass / 2 fail for B maps of one grid.

    `size` is N for a square grid or (N, M). `multi_hot` is (B, len(DEFECT_CLASSES)) bool: the
    patterns of each map (all False = ``none``). Overlapping patterns take the larger fail probability.
    """
    config = config or GeneratorConfig()
    ranges = config.ranges
    rows, cols = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    grid = Grid(rows, cols)
    multi_hot = np.asarray(multi_hot, dtype=bool)
    count = multi_hot.shape[0]
    geo = grid.coordinates()
    on_wafer = geo["r"] <= 1.0
    prob, background = _background(count, grid, geo, rng, ranges)
    regions = []  # (maps, their on-wafer region) of each localised pattern, for the visibility check
    for j, cls in enumerate(DEFECT_CLASSES):
        idx = np.flatnonzero(multi_hot[:, j])
        if idx.size == 0:
            continue
        if cls in ("Near-full", "Random"):
            rate = ranges.near_full_rate if cls == "Near-full" else ranges.random_rate
            prob[idx] = np.maximum(prob[idx], _u(rng, rate, idx.size))
            continue
        mask = _visible_region(cls, idx.size, geo, grid, rng, ranges, on_wafer)
        p = _u(rng, ranges.scratch_fail_prob if cls == "Scratch" else ranges.region_fail_prob, idx.size)
        area = np.maximum((mask & on_wafer).sum(axis=(1, 2)), 1).astype(np.float32)[:, None, None]
        p = np.maximum(p, background[idx] + ranges.min_pattern_contrast)
        p = np.minimum(np.maximum(p, ranges.min_pattern_fails / area), 1.0)
        prob[idx] = np.where(mask, np.maximum(prob[idx], p), prob[idx])
        regions.append((idx, mask & on_wafer))
    fails = rng.random((count, rows, cols), dtype=np.float32) < prob
    for idx, region in regions:
        _redraw_until_visible(fails, prob, idx, region, background[idx, 0, 0], rng, ranges)
    assert (OFF_WAFER_DIE, PASS_DIE, FAIL_DIE) == (0, 1, 2)  # the arithmetic below relies on this coding
    die_maps = fails.view(np.uint8) + np.uint8(PASS_DIE)
    die_maps *= on_wafer.view(np.uint8)
    return die_maps


def _invisible(fails: np.ndarray, region: np.ndarray, background: np.ndarray, ranges: PatternRanges) -> np.ndarray:
    """Which drawn patterns (fails and regions (n, N, M), background rates (n,)) cannot be seen: fewer
    realised fails, or a region less dense than the background, than ``ranges.realised_share`` of what
    ``min_pattern_fails`` and ``min_pattern_contrast`` ask on average."""
    dies = region.sum(axis=(1, 2))
    hit = (fails & region).sum(axis=(1, 2))
    share = ranges.realised_share
    needed = np.ceil(share * np.minimum(ranges.min_pattern_fails, dies))
    return (hit < needed) | (hit < (background + share * ranges.min_pattern_contrast) * dies)


def _redraw_until_visible(
    fails: np.ndarray,
    prob: np.ndarray,
    idx: np.ndarray,
    region: np.ndarray,
    background: np.ndarray,
    rng: np.random.Generator,
    ranges: PatternRanges,
) -> None:
    """Redraws (in place) the region's dies of maps ``idx`` whose pattern came out invisible, up to
    ``ranges.region_redraws`` times; then those regions fail solid."""
    for attempt in range(ranges.region_redraws + 1):
        bad = np.flatnonzero(_invisible(fails[idx], region, background, ranges))
        if bad.size == 0:
            return
        maps, inside = idx[bad], region[bad]
        if attempt == ranges.region_redraws:
            fails[maps] |= inside
            return
        drawn = rng.random(inside.shape, dtype=np.float32) < prob[maps]
        fails[maps] = np.where(inside, drawn, fails[maps])


def _visible_region(
    cls: str, n: int, geo, grid: "Grid", rng: np.random.Generator, ranges: PatternRanges, on_wafer: np.ndarray
) -> np.ndarray:
    """``n`` regions of a class, each holding at least ``ranges.min_region_dies`` on-wafer dies where the
    grid allows it (scratches: ``scratch_min_dies`` and ``scratch_min_share`` of the grid's side): too
    small ones are redrawn, then drawn whole (no partial cut)."""
    share = ranges.partial_share if cls in _PARTIAL_CLASSES else 0.0
    # A scratch is a line: its own minimum length is the bound (it must lie on the wafer too).
    side = float(np.sqrt(grid.rows * grid.cols))
    minimum = (
        max(ranges.scratch_min_dies, ranges.scratch_min_share * side) if cls == "Scratch" else ranges.min_region_dies
    )
    mask = _partial(_REGIONS[cls](n, geo, grid, rng, ranges), geo, rng, share)
    for attempt in range(ranges.region_redraws + 1):
        small = np.flatnonzero((mask & on_wafer).sum(axis=(1, 2)) < minimum)
        if small.size == 0:
            break
        whole = attempt == ranges.region_redraws
        redrawn = _REGIONS[cls](small.size, geo, grid, rng, ranges)
        mask[small] = redrawn if whole else _partial(redrawn, geo, rng, share)
    return mask


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


def lot_grid_shape(seed: int, lot_index: int, config: GeneratorConfig) -> Tuple[int, int]:
    """The (rows, columns) of a lot's die grid: one product per lot, from the lot's own random stream."""
    rng = np.random.default_rng([seed, 1, lot_index])
    ranges = config.ranges
    lo, hi = config.min_size, config.max_size
    if rng.random() < ranges.wide_side_share:
        side = float(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
    else:
        side = rng.uniform(*ranges.typical_side)
    aspect = 1.0 if rng.random() < ranges.square_share else float(np.exp(rng.uniform(*np.log(ranges.aspect))))
    rows, cols = side / np.sqrt(aspect), side * np.sqrt(aspect)
    return int(np.clip(round(rows), lo, hi)), int(np.clip(round(cols), lo, hi))


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
        shapes = {int(lot): lot_grid_shape(seed, int(lot), config) for lot in np.unique(lots)}
        images: List[Optional[np.ndarray]] = [None] * n
        for shape in sorted(set(shapes.values())):
            members = np.flatnonzero([shapes[int(lot)] == shape for lot in lots])
            rendered = die_maps_to_images(generate_die_maps(multi_hot[members], shape, rng, config))
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


def generate_wafer_maps(
    count: int, seed: int, config: Optional[GeneratorConfig] = None, **overrides
) -> List[WaferRecord]:
    """Generate `count` synthetic wafer maps for `seed` (see GeneratorConfig; keyword overrides allowed)."""
    if overrides:
        base = config or GeneratorConfig()
        config = GeneratorConfig(**{**base.__dict__, **overrides})
    return list(iter_wafer_maps(count, seed, config))
