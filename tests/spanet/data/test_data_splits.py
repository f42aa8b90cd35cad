"""Splits by lot: deterministic, ratio-following, and never splitting a lot."""

import pytest

from spanet.data import assign_split
from spanet.data.splits import normalise_ratios


def test_same_key_same_split_and_ratios_are_followed():
    ratios = {"train": 0.75, "eval": 0.25}
    splits = [assign_split(f"lot:{i}", ratios, seed=1) for i in range(4000)]
    assert splits == [assign_split(f"lot:{i}", ratios, seed=1) for i in range(4000)]
    assert 0.72 < splits.count("train") / 4000 < 0.78
    assert splits != [assign_split(f"lot:{i}", ratios, seed=2) for i in range(4000)]


def test_three_way_split_and_bad_ratios():
    got = {assign_split(str(i), {"train": 8, "eval": 1, "test": 1}) for i in range(500)}
    assert got == {"train", "eval", "test"}
    assert normalise_ratios({"a": 1, "b": 3}) == (("a", 0.25), ("b", 1.0))
    with pytest.raises(ValueError, match="positive"):
        normalise_ratios({"train": 0, "eval": 1})
    with pytest.raises(ValueError, match="split name"):
        normalise_ratios({"tr ain": 1})
