"""Shuffled read plans: the same records, in a seeded random order that mixes classes across shards."""

from spanet.data import GeneratorConfig, WaferRecord, generate_wafer_maps, write_dataset
from spanet.data.formats.base import FileEntry, ReadPlan, Shard, shuffle_plan
from spanet.data.formats.mixedwm38 import MixedWM38Reader


def test_file_entries_are_dealt_randomly_and_deterministically():
    entries = [FileEntry(f"/d/{c}/{i}.png", f"{c}/{i}.png", c) for c in ("A", "B") for i in range(50)]
    plan = ReadPlan(tuple(Shard("/d", entries=tuple(entries[i : i + 25])) for i in range(0, 100, 25)))
    shuffled = shuffle_plan(plan, seed=3)
    assert shuffled == shuffle_plan(plan, seed=3) != shuffle_plan(plan, seed=4)
    assert sorted(e.ref for s in shuffled.shards for e in s.entries) == sorted(e.ref for e in entries)
    assert [len(s.entries) for s in shuffled.shards] == [25] * 4
    assert all({e.label for e in s.entries} == {"A", "B"} for s in shuffled.shards)  # classes mixed in every shard


def test_array_ranges_are_interleaved(tmp_path):
    records = generate_wafer_maps(30, 1, GeneratorConfig(min_size=26, max_size=26))
    path = str(tmp_path / "m.npz")
    write_dataset(records, path, "npz")
    reader = MixedWM38Reader(maps_per_shard=10)
    shuffled = shuffle_plan(reader.plan(path), seed=0)
    assert [(s.start, s.stop, s.step) for s in shuffled.shards] == [(0, 30, 3), (1, 30, 3), (2, 30, 3)]
    refs = [r.ref for s in shuffled.shards for r in reader.read_shard(s) if isinstance(r, WaferRecord)]
    assert sorted(refs) == sorted(f"m.npz#{i}" for i in range(30))
