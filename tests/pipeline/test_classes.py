"""The run's class set: discovered from the data or given with --classes / --normal-class / --mixed,
and every way it can be wrong stopped with one line before any component runs."""

import os

import numpy as np
import pytest

from pipeline.classes import ClassSetError, classes_for_compile, resolve_classes, unlisted_labels
from pipeline.config import PipelineConfig
from pipeline.run_local import EXIT_BAD_INPUT, main
from spanet.data.classes import WAFER_CLASSES
from spanet.data.imageio import encode_png


def _folder(root, counts):
    """``root/<class>/<n>.png`` with ``counts[class]`` tiny grey images each (each image its own split unit)."""
    for label, count in counts.items():
        os.makedirs(root / label, exist_ok=True)
        for n in range(count):
            (root / label / f"{n:03d}.png").write_bytes(encode_png(np.full((8, 8), 128 + n % 100, np.uint8)))
    return root


def _stopped_with(capsys, argv):
    """Runs run_local.py; asserts it stopped with the bad-input status, and returns its last stderr line."""
    assert main(argv) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "no message"
    return lines[-1]


@pytest.fixture
def four_classes(tmp_path):
    return _folder(tmp_path / "data", {"good": 40, "particle": 30, "bridge": 30, "residue": 30})


def test_classes_are_discovered_from_the_folder_names(four_classes):
    config = PipelineConfig(data_path=str(four_classes))
    resolved, census = resolve_classes(config.with_updates(image=config.image.__class__(normal_class="good")))
    assert resolved.class_names == ("bridge", "good", "particle", "residue")
    assert resolved.gate_config.normal_class == "good" and resolved.gate_config.defect_classes == (
        "bridge",
        "particle",
        "residue",
    )
    assert resolved.data_format == "png"  # "auto" resolved once
    assert sum(census.total(c) for c in resolved.class_names) == 130


def test_given_classes_keep_their_order_and_labels_outside_them_are_left_to_the_schema_gate(four_classes):
    from components.config import ImageConfig

    config = PipelineConfig(
        data_path=str(four_classes), class_names=("good", "particle", "bridge"), image=ImageConfig(normal_class="good")
    )
    resolved, census = resolve_classes(config)
    assert resolved.class_names == ("good", "particle", "bridge")
    assert unlisted_labels(resolved.class_names, census) == ["residue"]


def test_unknown_normal_class_is_one_line_before_any_component(four_classes, tmp_path, capsys):
    out = tmp_path / "out"
    line = _stopped_with(capsys, ["--data", str(four_classes), "--output-root", str(out), "--normal-class", "ok"])
    assert (
        "--normal-class 'ok' is not one of the labels found in data ['bridge', 'good', 'particle', 'residue']" in line
    )
    assert not (out / "pipeline").exists()


def test_class_list_that_does_not_match_the_data(four_classes, tmp_path, capsys):
    line = _stopped_with(
        capsys,
        [
            "--data",
            str(four_classes),
            "--output-root",
            str(tmp_path / "o"),
            "--classes",
            "good,particle,scratch",
            "--normal-class",
            "good",
        ],
    )
    assert "--classes lists ['scratch'] but" in line and "holds no wafer labelled so" in line and "'residue'" in line


def test_single_class_is_refused(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"good": 20})
    line = _stopped_with(capsys, ["--data", str(data), "--output-root", str(tmp_path / "o"), "--normal-class", "good"])
    assert "only one class ('good')" in line


def test_class_with_no_example_in_a_split_is_named(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"good": 40, "particle": 40, "rare": 1})
    line = _stopped_with(capsys, ["--data", str(data), "--output-root", str(tmp_path / "o"), "--normal-class", "good"])
    assert line.startswith("Stopped: class 'rare' has no example in the ") and "split" in line
    assert "splits are by lot" in line


@pytest.mark.parametrize("text, problem", [("a,,b", "name 2 is empty"), ("a,b,a", "['a'] listed more than once")])
def test_malformed_class_list_is_an_argument_error(text, problem, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--classes", text])
    assert exit_info.value.code == 2
    assert problem in capsys.readouterr().err


def test_mixed_single_leaves_mixed_labels_out_of_the_census_and_the_read(tmp_path):
    from spanet.data.formats.image_folder import ImageFolderReader
    from spanet.data.records import RejectKind

    data = _folder(tmp_path / "data", {"none": 20, "Center": 20, "Center+Loc": 25})
    config = PipelineConfig(data_path=str(data), mixed="single")
    resolved, census = resolve_classes(config)
    assert resolved.class_names == ("Center", "none")
    assert config.reader_options("png") == {"mixed": False} and config.reader_options("wm811k") == {}
    plan = ImageFolderReader(mixed=False).plan(str(data))
    excluded = [r for r in plan.rejected if r.kind == RejectKind.EXCLUDED]
    assert len(excluded) == 25 and {r.label for r in excluded} == {"Center+Loc"}
    assert "left out in single-label mode" in excluded[0].reason
    # Each combination its own class by default (MixedWM38's 38 classes).
    assert resolve_classes(config.with_updates(mixed="classes"))[0].class_names == ("Center", "Center+Loc", "none")


def test_npz_labels_are_counted_from_the_label_array(tmp_path):
    from spanet.data.formats.mixedwm38 import MixedWM38Reader, write_mixedwm38
    from spanet.data.generator import generate_wafer_maps

    records = generate_wafer_maps(
        60, seed=1, min_size=26, max_size=26, class_mix={"none": 1.0, "Loc": 1.0}, mixed_fraction=0.3, lot_size=5
    )
    path = str(tmp_path / "maps.npz")
    write_mixedwm38(records, path)
    single = MixedWM38Reader(mixed=False)
    planned = single.planned_labels(single.plan(path))
    read = [r for r in single.read(path) if hasattr(r, "image")]
    assert sorted(label for label, _ in planned) == sorted(r.label for r in read)
    assert {r.label for r in records} - {label for label, _ in planned} <= {r.label for r in records if "+" in r.label}


def test_a_cluster_spec_needs_classes_for_data_it_cannot_read(tmp_path):
    remote = PipelineConfig(data_path="gs://bucket/wafers")
    with pytest.raises(ClassSetError, match="cannot be read here to find its classes: give --classes"):
        classes_for_compile(remote)
    assert classes_for_compile(remote.with_updates(class_names=("none", "Loc"))).class_names == ("none", "Loc")
    assert classes_for_compile(PipelineConfig()).class_names == WAFER_CLASSES


def test_g85_files_without_a_manifest_are_split_by_the_lot_they_name(tmp_path):
    """G85 files carry their own lot: the census splits them as ingestion will, not file by file."""
    from spanet.data.census import take_census
    from spanet.data.formats.g85 import G85Reader, write_g85
    from spanet.data.generator import generate_wafer_maps
    from spanet.data.splits import assign_split

    records = generate_wafer_maps(
        40, seed=2, min_size=20, max_size=24, class_mix={"none": 1.0, "Loc": 1.0}, lot_size=10
    )
    write_g85(records, str(tmp_path / "g85"))
    (tmp_path / "g85" / "manifest.csv").unlink()  # labels from the folders, lots from the files
    ratios = {"train": 0.6, "eval": 0.2, "test": 0.2}
    census = take_census(G85Reader(), str(tmp_path / "g85"), ratios)
    expected = {}
    for r in records:
        split = assign_split(f"lot:{r.lot_id}", ratios)
        expected.setdefault(split, {}).setdefault(r.label, 0)
        expected[split][r.label] += 1
    assert {s: c for s, c in census.per_split.items() if c} == expected


def test_multilabel_patterns_are_the_parts_of_the_labels_and_the_label_values_stay_for_the_schema(tmp_path):
    data = _folder(tmp_path / "data", {"none": 40, "Center": 30, "Loc": 30, "Center+Loc": 30})
    resolved, _ = resolve_classes(PipelineConfig(data_path=str(data), mixed="multilabel"))
    assert resolved.image.patterns == ("Center", "Loc")
    assert resolved.class_names == ("Center", "Center+Loc", "Loc", "none")  # the schema's label domain
    assert resolved.gate_config.patterns == ("Center", "Loc") and resolved.gate_config.normal_class == "none"
    assert PipelineConfig().reader_options("png") == {"mixed": True}
    # --classes names the patterns (and the normal class); a combination with an unlisted part is left
    # to the schema gate like any unlisted label.
    listed, census = resolve_classes(
        PipelineConfig(data_path=str(data), mixed="multilabel", class_names=("Center", "none"))
    )
    assert listed.image.patterns == ("Center",) and listed.class_names == ("Center", "none")
    assert unlisted_labels(listed.class_names, census) == ["Center+Loc", "Loc"]


def test_multilabel_pattern_found_only_in_mixed_maps_counts_and_a_pattern_missing_from_a_split_is_named(
    tmp_path, capsys
):
    data = _folder(tmp_path / "data", {"none": 40, "Center": 30, "Center+Scratch": 30})
    resolved, _ = resolve_classes(PipelineConfig(data_path=str(data), mixed="multilabel"))
    assert resolved.image.patterns == ("Center", "Scratch")
    sparse = _folder(tmp_path / "sparse", {"none": 40, "Center": 30, "Center+Scratch": 1})
    line = _stopped_with(
        capsys, ["--data", str(sparse), "--mixed", "multilabel", "--output-root", str(tmp_path / "out")]
    )
    assert "class 'Scratch' has no example in the" in line


def test_multilabel_cluster_spec_needs_data_readable_here():
    with pytest.raises(ClassSetError, match="--mixed multilabel.*readable on this machine"):
        classes_for_compile(
            PipelineConfig(data_path="gs://bucket/maps.npz", mixed="multilabel", class_names=("Center", "none"))
        )


def test_a_hundred_classes_reach_the_schema_and_the_gate(tmp_path):
    from components.evaluation import build_eval_config, gated_slices
    from schemas import label_domain, schema_for_classes

    names = [f"defect_{i:02d}" for i in range(99)] + ["none"]
    data = _folder(tmp_path / "data", {name: 60 for name in names})
    resolved, census = resolve_classes(PipelineConfig(data_path=str(data)))
    assert resolved.class_names == tuple(sorted(names)) and len(census.labels) == 100
    assert label_domain(schema_for_classes(resolved.class_names)) == sorted(names)
    gate = resolved.gate_config
    assert len(gated_slices(gate)) == 99 + len(gate.slice_features)  # every defect class, then the features
    assert len(build_eval_config(gate).slicing_specs) == 1 + 100 + len(gate.slice_features)
