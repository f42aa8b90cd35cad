"""The paper's experiments on tiny data: each command writes a well-formed Markdown table and a PNG.

Tiny: 60 synthetic maps in lots of 5, 1 epoch, the first 2 configurations of each experiment.
"""

import numpy as np
import pytest
from PIL import Image

from experiments import ablation, harness, model_comparison, r_sweep
from spanet.data.records import WaferRecord

TINY = ["--quick", "--count", "60", "--lot-size", "5", "--epochs", "1", "--limit", "2"]


def read_table(path):
    """(header, rows) of the first Markdown table in a file."""
    lines = [line.strip() for line in open(path, encoding="utf-8") if line.strip().startswith("|")]
    assert len(lines) >= 3, f"no table in {path}"
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    assert set(lines[1].replace("|", "")) == {"-"}, "second line is not the header rule"
    header, rows = split(lines[0]), [split(line) for line in lines[2:]]
    assert all(len(row) == len(header) for row in rows)
    return header, rows


def number(text):
    return float(text.replace(",", "").rstrip("%"))


def check_png(path):
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.size[0] >= 400 and picture.size[1] >= 200
    assert np.asarray(picture.convert("L")).std() > 5, "the plot is blank"


def check_scores(row, header, names=("accuracy", "precision", "recall", "F1")):
    for name in names:
        assert 0.0 <= number(row[header.index(name)]) <= 1.0, (name, row)


@pytest.mark.parametrize("module, rows_expected", [(r_sweep, 2), (ablation, 2), (model_comparison, 2)])
def test_experiment_quick_path_writes_a_table_and_a_plot(tmp_path, capsys, module, rows_expected):
    assert module.main(TINY + ["--out", str(tmp_path)]) == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(progress) == rows_expected  # one line per trained configuration
    page = tmp_path / f"{module.NAME}.md"
    header, rows = read_table(page)
    assert len(rows) == rows_expected
    check_scores(rows[0], header)
    for row in rows:
        check_scores(row, header)
        params = [number(c) for h, c in zip(header, row) if h.startswith("params")]
        assert params and all(p > 1000 for p in params)
    text = page.read_text()
    assert f"python experiments/{module.NAME}.py" in text and "Machine:" in text and f"]({module.NAME}.png)" in text
    check_png(tmp_path / f"{module.NAME}.png")


def test_r_sweep_table_covers_the_paper_ratios_and_both_parameter_rules(tmp_path):
    assert [s.option("r") for s in r_sweep.specs(0.25)] == list(r_sweep.R_VALUES)
    assert r_sweep.R_VALUES == (0.06, 0.13, 0.25, 0.5, 0.63, 0.83, 1.0)
    assert all(s.option("block_depth_multiplier") == 1 for s in r_sweep.specs(0.25, "fixed"))
    assert all(s.option("block_depth_multiplier") is None for s in r_sweep.specs(0.25, "published"))


def test_ablation_changes_one_setting_at_a_time():
    base, *variants = ablation.specs(0.25)
    settings = lambda s: {**dict(s.options), "optimizer": s.optimizer, "schedule": s.schedule}  # noqa: E731
    for variant in variants:
        changed = {k for k, v in settings(variant).items() if settings(base)[k] != v}
        assert len(changed) == 1, (variant.label, changed)
    assert {s.group for s in variants} == {"normalisation", "head", "optimiser", "schedule", "attention"}


def test_model_comparison_has_five_networks_at_three_widths():
    specs = model_comparison.specs((0.25, 0.5, 1.0))
    assert len(specs) == 15 and len({(s.model, s.width) for s in specs}) == 15
    assert {s.model for s in specs} == {"spanet", "ghostnet", "mobilenet_v2", "mobilenet_v3", "resnet50_gc"}


def test_split_by_lot_keeps_lots_whole_and_both_sides_non_empty():
    image = np.zeros((8, 8), np.uint8)
    records = [WaferRecord(image, "none", lot_id=f"L{i // 5}", wafer_id=str(i)) for i in range(20)]
    train, test = harness.split_by_lot(records, 0.25, seed=0)
    assert len(train) + len(test) == 20 and len(test) == 5  # 1 of 4 lots
    assert not {r.lot_id for r in train} & {r.lot_id for r in test}
    assert harness.split_by_lot(records, 0.25, seed=0) == (train, test)


def test_scores_are_macro_averages_and_defect_recall():
    names = ["Center", "Scratch", "none"]
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 2, 1, 0, 2, 2])
    result = harness.scores(y_true, y_pred, names, "none")
    assert result["accuracy"] == pytest.approx(4 / 6)
    # precision: Center 1/2, Scratch 1/1, none 2/3; recall: 1/2, 1/2, 1
    assert result["precision"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert result["recall"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert result["defect_recall"] == pytest.approx(3 / 4)  # one Center predicted as none
