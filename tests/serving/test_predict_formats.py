"""``spanet predict``'s inputs and outputs without a server: folders and globs, bad files, csv and jsonl."""

import csv
import io
import json

import numpy as np

from spanet.data.imageio import encode_png
from spanet.serving.client import Prediction
from spanet.serving.predict import expand_paths, format_csv, format_jsonl, read_many


def _tree(root):
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    for path in ("a/1.png", "a/deep/2.png", "b/3.png"):
        (root / path).write_bytes(encode_png(np.full((6, 6), 128, np.uint8)))
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    (root / "b" / "readme.txt").write_text("x")
    return root


def test_folders_are_searched_recursively_and_globs_expanded_in_order(tmp_path):
    root = _tree(tmp_path)
    files, problems = expand_paths(
        [str(root / "a"), str(root / "b" / "*.png"), str(root / "none" / "*.png"), str(root / "b" / "readme.txt")]
    )
    assert [f[len(str(root)) + 1 :] for f in files] == [
        "a/1.png",
        "a/bad.png",
        "a/deep/2.png",
        "b/3.png",
        "b/readme.txt",
    ]
    assert problems == [f"{root / 'none' / '*.png'}: matches no file"]


def test_bad_files_are_listed_with_their_reason_and_the_rest_kept(tmp_path):
    root = _tree(tmp_path)
    inputs, problems = read_many([str(root), str(root / "b" / "readme.txt")])
    assert [i.ref[len(str(root)) + 1 :] for i in inputs] == ["a/1.png", "a/deep/2.png", "b/3.png"]
    assert len(problems) == 2
    assert problems[0].startswith(f"{root / 'a' / 'bad.png'}: not a readable PNG/JPEG image")
    assert problems[1].startswith(f"{root / 'b' / 'readme.txt'}: unsupported file type")


def _predictions():
    return [
        ("x.png", Prediction("Center", {"Center": 0.9, "none": 0.1}, True, 0.8, 7)),
        ("y.png", Prediction("unknown", {"Center": 0.5, "none": 0.5}, True, 0.75, 7, unknown=True, familiarity=0.1)),
        ("z.png", Prediction("Center+Loc", {"Center": 0.8, "Loc": 0.7}, True, 0.9, 7, patterns=("Center", "Loc"))),
    ]


def test_csv_has_a_column_per_class_and_empty_confidence_for_unknown():
    rows = list(csv.DictReader(io.StringIO(format_csv(_predictions()[:2]))))
    assert list(rows[0]) == [
        "file",
        "class",
        "confidence",
        "defective",
        "defect_score",
        "unknown",
        "model_version",
        "p_Center",
        "p_none",
    ]
    assert rows[0]["confidence"] == "0.900000" and rows[1]["confidence"] == "" and rows[1]["unknown"] == "1"


def test_jsonl_is_strict_json_with_null_for_no_confidence_and_the_pattern_set():
    def refuse(value):
        raise ValueError(value)

    records = [json.loads(line, parse_constant=refuse) for line in format_jsonl(_predictions()).splitlines()]
    assert records[0]["confidence"] == 0.9 and records[1]["confidence"] is None
    assert records[2]["patterns"] == ["Center", "Loc"] and records[2]["confidence"] == 0.7
    assert "patterns" not in records[0]
