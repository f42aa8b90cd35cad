"""The synthetic generator: determinism, class mix, lots, and per-class geometry."""

import numpy as np
import pytest

from spanet.data import GeneratorConfig, WAFER_CLASSES, generate_wafer_maps, image_to_die_map
from spanet.data.classes import EXCLUDED_MIXES, label_parts
from spanet.data.generator import generate_die_maps


def test_same_seed_same_maps_other_seed_other_maps():
    a, b, c = (generate_wafer_maps(60, s) for s in (7, 7, 8))
    assert [r.label for r in a] == [r.label for r in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert not all(x.image.shape == y.image.shape and np.array_equal(x.image, y.image) for x, y in zip(a, c))


def test_records_follow_the_grey_level_convention_and_lots_of_25():
    recs = generate_wafer_maps(60, 1)
    for r in recs:
        assert r.image.dtype == np.uint8 and set(np.unique(r.image)) <= {0, 128, 255}
        assert 26 <= r.image.shape[0] <= 64 and r.image.shape[0] == r.image.shape[1]
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


def _fail_stats(cls, n=40, size=48, seed=0):
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
    assert 0.01 <= geo["none"][0] <= 0.05                          # background rate only
    assert geo["Edge-Ring"][1] > 2.5 * edge_area                  # fails concentrated at the edge
    assert geo["Edge-Loc"][1] > 1.5 * edge_area
    assert geo["Center"][2] < 0.45 and geo["Center"][0] > 2 * geo["none"][0]
    assert 0.3 < geo["Donut"][2] < 0.8
    assert 0.78 <= geo["Near-full"][0] <= 0.96
    assert 0.28 <= geo["Random"][0] <= 0.62
    for cls in ("Loc", "Scratch"):
        assert geo["none"][0] < geo[cls][0] < 0.3


def test_every_map_has_dies_and_correct_wafer_circle():
    recs = generate_wafer_maps(30, 9, min_size=26, max_size=26)
    die = image_to_die_map(recs[0].image)
    assert die[0, 0] == 0 and die[13, 13] > 0 and die[0, 13] > 0  # corners off, centre and edge midpoints on
