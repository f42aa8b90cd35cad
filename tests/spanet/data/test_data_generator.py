"""The synthetic generator: determinism, class mix, lots, and per-class geometry."""

from dataclasses import replace

import numpy as np
import pytest

from spanet.data import GeneratorConfig, WAFER_CLASSES, generate_wafer_maps, image_to_die_map
from spanet.data.classes import EXCLUDED_MIXES, label_parts
from spanet.data.generator import PatternRanges, generate_die_maps, wafer_mask


def test_same_seed_same_maps_other_seed_other_maps():
    a, b, c = (generate_wafer_maps(60, s) for s in (7, 7, 8))
    assert [r.label for r in a] == [r.label for r in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert not all(x.image.shape == y.image.shape and np.array_equal(x.image, y.image) for x, y in zip(a, c))


def test_records_follow_the_grey_level_convention_and_lots_of_25():
    recs = generate_wafer_maps(60, 1)
    config = GeneratorConfig()
    for r in recs:
        assert r.image.dtype == np.uint8 and set(np.unique(r.image)) <= {0, 128, 255}
        assert all(config.min_size <= side <= config.max_size for side in r.image.shape)
        assert r.original_shape == r.image.shape and r.source == "synthetic" and r.label in WAFER_CLASSES
    lots = [r.lot_id for r in recs]
    assert lots[:25] == [lots[0]] * 25 and lots[25] != lots[0] and len(set(lots)) == 3
    assert [r.wafer_id for r in recs[:25]] == [f"{i:02d}" for i in range(1, 26)]
    # one product per lot: every wafer of a lot has the same grid
    for lot in set(lots):
        assert len({r.image.shape for r in recs if r.lot_id == lot}) == 1


def test_class_mix_is_followed():
    recs = generate_wafer_maps(400, 3, class_mix={"none": 3.0, "Scratch": 1.0}, min_size=26, max_size=30)
    labels = [r.label for r in recs]
    assert set(labels) == {"none", "Scratch"}
    assert 0.65 < labels.count("none") / len(labels) < 0.85
    with pytest.raises(ValueError, match="Blob"):
        GeneratorConfig(class_mix={"Blob": 1.0})


def test_mixed_types_are_named_by_their_parts_and_exclude_impossible_pairs():
    recs = generate_wafer_maps(200, 5, mixed_fraction=1.0, min_size=40, max_size=40)
    for r in recs:
        parts = label_parts(r.label)
        assert 2 <= len(parts) <= 4
        assert list(parts) == [c for c in WAFER_CLASSES if c in parts]
        assert not any(a in parts and b in parts for a, b in EXCLUDED_MIXES)


def _fail_stats(cls, n=80, size=48, seed=0):
    """Fail rate on the wafer, share of fails in the outer 12 % of R, and mean fail radius (R = 1)."""
    col = [c for c in WAFER_CLASSES if c != "none"]
    hot = np.zeros((n, len(col)), bool)
    if cls != "none":
        hot[:, col.index(cls)] = True
    maps = generate_die_maps(hot, size, np.random.default_rng(seed))
    coords = (np.arange(size) - (size - 1) / 2) / (size / 2)
    r = np.hypot(*np.meshgrid(coords, coords, indexing="ij"))
    on = maps[0] > 0
    fails = maps == 2
    rate = fails[:, on].mean()
    edge_share = fails[:, r > 0.88].sum() / fails.sum()
    mean_r = (fails * r).sum() / fails.sum()
    return rate, edge_share, mean_r


def test_per_class_geometry():
    geo = {c: _fail_stats(c) for c in WAFER_CLASSES}
    edge_area = _fail_stats("Random")[1]  # share of the wafer's dies in the outer band (uniform fails)
    assert 0.01 <= geo["none"][0] <= 0.06  # background (scattered and clustered) only
    assert geo["Edge-Ring"][1] > 2.5 * edge_area  # fails concentrated at the edge
    assert geo["Edge-Loc"][1] > 1.5 * edge_area
    assert geo["Center"][2] < 0.45 and geo["Center"][0] > 2 * geo["none"][0]
    assert 0.3 < geo["Donut"][2] < 0.8
    assert 0.8 <= geo["Near-full"][0] <= 0.97
    assert 0.25 <= geo["Random"][0] <= 0.62
    for cls in ("Loc", "Scratch"):
        assert geo["none"][0] < geo[cls][0] < 0.3


def test_every_map_has_dies_and_correct_wafer_circle():
    recs = generate_wafer_maps(30, 9, min_size=26, max_size=26)
    die = image_to_die_map(recs[0].image)
    assert die[0, 0] == 0 and die[13, 13] > 0 and die[0, 13] > 0  # corners off, centre and edge midpoints on


def test_grids_vary_in_size_and_aspect_and_the_wafer_is_the_inscribed_ellipse():
    recs = generate_wafer_maps(2000, 4, lot_size=10)
    shapes = {r.image.shape for r in recs}
    aspects = np.array([w / h for h, w in shapes])
    sides = np.array([np.sqrt(h * w) for h, w in shapes])
    assert len(shapes) > 100
    assert (
        (aspects < 0.8).any() and (aspects > 1.25).any() and (aspects == 1.0).any()
    )  # non-square both ways, and square
    assert sides.min() < 20 and sides.max() > 70 and 0.4 < np.mean((sides >= 25) & (sides <= 50)) < 0.9
    for r in recs[:200]:
        on = image_to_die_map(r.image) > 0
        ellipse = wafer_mask(*r.image.shape)
        assert not (on & ~ellipse).any()  # no die outside the inscribed ellipse
        assert on[ellipse].mean() == 1.0


def _region_stats(cls, count=300, seed=1):
    """Per map: fail rate on the wafer and the spread of the failing dies' radii (R = 1)."""
    col = [c for c in WAFER_CLASSES if c != "none"]
    hot = np.zeros((count, len(col)), bool)
    hot[:, col.index(cls)] = True
    quiet = GeneratorConfig(ranges=PatternRanges(background_rate=(0.0, 0.0), clustered_share=0.0))  # pattern dies only
    maps = generate_die_maps(hot, (40, 52), np.random.default_rng(seed), quiet)
    u = (np.arange(52) - 25.5) / 26.0
    v = (np.arange(40) - 19.5) / 20.0
    r = np.hypot(*np.meshgrid(u, v))
    on = maps[0] > 0
    rates = (maps == 2)[:, on].mean(axis=1)
    inner = np.array([np.percentile(r[m == 2], 10) if (m == 2).any() else 1.0 for m in maps])
    return rates, inner


@pytest.mark.parametrize("cls", ["Center", "Donut", "Edge-Ring", "Edge-Loc", "Loc", "Scratch"])
def test_each_class_ranges_really_vary(cls):
    rates, inner = _region_stats(cls)
    # Faint to solid, small to large: the pattern's share of the wafer spans a 3x range across maps ...
    assert np.percentile(rates, 90) > 3 * np.percentile(rates, 10) > 0
    # ... and where the pattern sits varies (not one template radius).
    assert np.std(inner) > 0.03


def test_scratches_are_often_one_die_wide_and_not_always_straight():
    from spanet.data.generator import scratch_path

    rng = np.random.default_rng(0)
    straight = scratch_path(rng, 1.0, 0, (0.0, 0.0), 0.02)
    bent = scratch_path(rng, 1.0, 1, (0.0, 0.0), 0.02)
    curved = scratch_path(rng, 1.0, 2, (0.0, 0.0), 0.02)
    heading = lambda p: np.unwrap(np.arctan2(*np.diff(p, axis=0).T[::-1]))  # noqa: E731
    assert np.ptp(heading(straight)) < 1e-6
    assert np.ptp(heading(bent)) > np.deg2rad(10) and np.ptp(heading(curved)) > np.deg2rad(25)
    assert np.all(np.diff(heading(curved)) * np.sign(heading(curved)[-1] - heading(curved)[0]) >= -1e-9)  # smooth turn
    weights = GeneratorConfig().ranges.scratch_width_weights
    assert weights[0] == max(weights)  # one die wide is the commonest


def test_wm811k_like_imbalance_is_a_class_mix():
    from spanet.data.generator import WM811K_CLASS_COUNTS

    labels = [r.label for r in generate_wafer_maps(2000, 2, class_mix=dict(WM811K_CLASS_COUNTS))]
    assert 0.82 < labels.count("none") / len(labels) < 0.88


def test_grid_size_bounds_are_checked():
    with pytest.raises(ValueError, match="max_size must be at most 512"):
        GeneratorConfig(max_size=60000)
    assert {r.image.shape for r in generate_wafer_maps(30, 0, min_size=52, max_size=52)} == {(52, 52)}


@pytest.mark.parametrize("cls", ["Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Scratch"])
def test_every_pattern_is_visible_even_on_small_grids(cls):
    """A pattern's region holds enough dies to fail visibly: no "defective" map that looks clean."""
    from spanet.data.generator import DEFECT_CLASSES, GeneratorConfig, PatternRanges, generate_die_maps

    config = GeneratorConfig(ranges=PatternRanges(background_rate=(0.0, 0.0), clustered_share=0.0))
    multi_hot = np.zeros((400, len(DEFECT_CLASSES)), bool)
    multi_hot[:, DEFECT_CLASSES.index(cls)] = True
    for size in [(12, 14), (16, 16), (26, 24), (103, 103)]:
        maps = generate_die_maps(multi_hot, size, np.random.default_rng(5), config)
        fails = (maps == 2).sum(axis=(1, 2))
        # As drawn, not only on average: 3/4 of min_pattern_fails (12), or of a scratch's six dies on a
        # small grid (on a large one a scratch holds a tenth of the side, 11 dies here).
        least = 5 if cls == "Scratch" and size[0] < 100 else 9
        assert fails.min() >= least, f"{cls} on {size}: {np.sort(fails)[:10]}"


def test_a_pattern_drawn_too_faint_is_redrawn():
    """Chance alone must not leave a pattern as a few scattered fails: 3/4 of min_pattern_fails as drawn."""
    from spanet.data.generator import DEFECT_CLASSES, GeneratorConfig, PatternRanges, generate_die_maps

    faint = PatternRanges(background_rate=(0.0, 0.0), clustered_share=0.0, region_fail_prob=(0.3, 0.3))
    multi_hot = np.zeros((500, len(DEFECT_CLASSES)), bool)
    multi_hot[:, DEFECT_CLASSES.index("Loc")] = True

    def fails(ranges):
        maps = generate_die_maps(multi_hot, (30, 30), np.random.default_rng(3), GeneratorConfig(ranges=ranges))
        return (maps == 2).sum(axis=(1, 2))

    assert fails(replace(faint, realised_share=0.0)).min() < 9  # unchecked, chance leaves some with a handful
    assert fails(faint).min() >= 9
