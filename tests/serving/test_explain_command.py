"""``spanet explain``: an explanation overlay per input on the wafer's own grid, listed in the chosen
format; unreadable files skipped and named. (That the map points at a planted defect is checked on a
model that learned planted defects: tests/pipeline/test_own_classes_e2e.py.)"""

import csv
import io

import numpy as np
import pytest
from PIL import Image

from spanet.cli import main

pytestmark = pytest.mark.slow


def test_explain_draws_each_map_on_the_wafers_own_grid(pushed_model_dir, wafer_records, tmp_path, capsys):
    from spanet.data.imageio import encode_png

    folder = tmp_path / "in"
    folder.mkdir()
    wafer = wafer_records[0].image[:, :-9]  # a non-square grid
    (folder / "wide.png").write_bytes(encode_png(wafer))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "maps"
    code = main(
        [
            "explain",
            str(folder),
            "--model-dir",
            str(pushed_model_dir),
            "--out",
            str(out),
            "--output",
            "csv",
            "--pixels",
            str(wafer.shape[1] * 3),
        ]
    )
    printed = capsys.readouterr()
    assert code == 1 and "broken.png" in printed.err
    rows = list(csv.DictReader(io.StringIO(printed.out)))
    assert [r["file"] for r in rows] == [str(folder / "wide.png")]
    drawn = np.asarray(Image.open(rows[0]["explanation"]))
    assert drawn.shape == (wafer.shape[0] * 3, wafer.shape[1] * 3, 3)  # the wafer's grid, each die 3x3 pixels
    from spanet.serving.local import LocalModel

    assert rows[0]["class"] in set(LocalModel(str(pushed_model_dir)).class_names) | {"unknown"}


def test_explain_refuses_a_folder_that_is_not_a_model(tmp_path, wafer_records, capsys):
    from spanet.data.imageio import encode_png

    (tmp_path / "w.png").write_bytes(encode_png(wafer_records[0].image))
    code = main(["explain", str(tmp_path / "w.png"), "--model-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "--model-dir" in err
