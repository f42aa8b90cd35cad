"""``pipeline/run_batch.py``: Beam RunInference with the pushed model over a folder of wafer images and
maps, one row per wafer equal to the model's own answers; bad files set aside; bad arguments refused
before any work."""

import csv
import json
import os

import numpy as np
import pytest

from pipeline.batch_inference import REJECTED_SUFFIX, SUMMARY_SUFFIX
from pipeline.run_batch import EXIT_BAD_INPUT, EXIT_REJECTED, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scoring_inputs(tmp_path_factory, tiny_maps):
    """lot_a/: four wafer PNGs and a corrupt PNG; lot_b/: an npz of three maps; returns (folder, refs in order)."""
    from spanet.data.formats.mixedwm38 import write_mixedwm38
    from spanet.data.imageio import encode_png

    folder = tmp_path_factory.mktemp("batch_inputs")
    (folder / "lot_a").mkdir()
    (folder / "lot_b").mkdir()
    for i, record in enumerate(tiny_maps(4, 21)):
        (folder / "lot_a" / f"w{i}.png").write_bytes(encode_png(record.image))
    (folder / "lot_a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_mixedwm38(tiny_maps(3, 22, min_size=40, max_size=40), str(folder / "lot_b" / "maps.npz"))
    return folder


def _expected(model_dir, folder):
    from spanet.serving.local import LocalModel
    from spanet.serving.predict import read_many

    inputs, problems = read_many([str(folder)])
    model = LocalModel(str(model_dir))
    return {item.ref: p for item, p in zip(inputs, model.predict([i.image for i in inputs]))}, problems


def test_batch_scoring_writes_one_row_per_wafer_equal_to_the_models_answers(
    pushed_model_dir, scoring_inputs, tmp_path, capfd
):
    out = tmp_path / "scores.csv"
    code = main(["--data", str(scoring_inputs), "--model-dir", str(pushed_model_dir), "--output", str(out)])
    printed = capfd.readouterr()  # descriptor level: the run's own lines go to the terminal past its log
    assert code == EXIT_REJECTED, printed
    expected, problems = _expected(pushed_model_dir, scoring_inputs)
    assert len(expected) == 7 and len(problems) == 1
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert sorted(r["file"] for r in rows) == sorted(expected)
    for row in rows:
        want = expected[row["file"]]
        assert row["class"] == want.class_name and int(row["defective"]) == int(want.defective)
        for name, p in want.probabilities.items():
            assert float(row[f"p_{name}"]) == pytest.approx(p, abs=2e-6)
    rejected = (tmp_path / f"scores{REJECTED_SUFFIX}").read_text().splitlines()
    assert len(rejected) == 1 and "corrupt.png" in rejected[0]
    summary = json.loads((tmp_path / f"scores{SUMMARY_SUFFIX}").read_text())
    assert summary["wafers"] == 7 and sum(summary["per_class"].values()) == 7
    assert summary["defective"] == sum(p.defective for p in expected.values())
    assert "Scored 7 wafers" in printed.out and "corrupt.png" in printed.err
    assert "Traceback" not in printed.out + printed.err


def test_batch_scoring_to_jsonl_gives_strict_json_per_wafer(pushed_model_dir, scoring_inputs, tmp_path):
    out = tmp_path / "scores.jsonl"
    main(["--data", str(scoring_inputs / "lot_b"), "--model-dir", str(pushed_model_dir), "--output", str(out)])

    def no_nan(value):
        raise ValueError(f"non-strict JSON constant {value}")

    rows = [json.loads(line, parse_constant=no_nan) for line in out.read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == [f"{scoring_inputs / 'lot_b' / 'maps.npz'}#{i}" for i in range(3)]
    assert all(set(r["probabilities"]) and np.isclose(sum(r["probabilities"].values()), 1.0, atol=1e-4) for r in rows)


@pytest.mark.parametrize(
    "change, option",
    [
        ({"--output": "scores.txt"}, "--output"),
        ({"--model-dir": "no_such_model"}, "--model-dir"),
        ({"--data": "no_such_folder/*.png"}, "--data"),
        ({"--batch-size": "0"}, "--batch-size"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_any_work(
    pushed_model_dir, scoring_inputs, tmp_path, capsys, change, option
):
    args = {
        "--data": str(scoring_inputs),
        "--model-dir": str(pushed_model_dir),
        "--output": str(tmp_path / "scores.csv"),
        "--batch-size": "8",
    }
    args.update({k: (str(tmp_path / v) if k != "--batch-size" else v) for k, v in change.items()})
    code = main([item for pair in args.items() for item in pair])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert len(err.splitlines()) == 1 and option in err, err
    assert os.listdir(tmp_path) == []  # nothing written


def test_an_existing_output_is_kept_unless_overwrite_is_given(pushed_model_dir, scoring_inputs, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    out.write_text("precious\n")
    code = main(["--data", str(scoring_inputs), "--model-dir", str(pushed_model_dir), "--output", str(out)])
    assert code == EXIT_BAD_INPUT and "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "precious\n"
