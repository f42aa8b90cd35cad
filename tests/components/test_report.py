"""The run report: rendered from hand-made data, and the real one of the tiny pipeline run.

Checks that every class is there, that the numbers equal the Evaluator's, and that every image
resolves (and loads in headless Chromium where Debian's ``chromium`` is installed).
"""

import base64
import io
import os
from html.parser import HTMLParser
from typing import Dict, List, Optional

import numpy as np
import pytest
from PIL import Image

from components.eval_summary import class_metrics_from_confusion
from components.report.data import GalleryItem, GatePolicy, ReportData
from components.report.render import render_report


class ReportParser(HTMLParser):
    """Collects every table (id -> {row key -> cell texts}), every <img> and every tag's attributes by id."""

    def __init__(self):
        super().__init__()
        self.tables: Dict[str, Dict[str, List[str]]] = {}
        self.images: List[Dict[str, Optional[str]]] = []
        self.by_id: Dict[str, Dict[str, Optional[str]]] = {}
        self._table: Optional[str] = None
        self._row_key: Optional[str] = None
        self._cells: Optional[List[str]] = None
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes:
            self.by_id[attributes["id"]] = attributes
        if tag == "img":
            self.images.append(attributes)
        elif tag == "table":
            self._table = attributes.get("id", "")
            self.tables[self._table] = {}
        elif tag == "tr" and self._table is not None:
            self._row_key = next((v for k, v in attributes.items() if k.startswith("data-")), None)
            self._cells = []
        elif tag == "td" and self._cells is not None:
            self._cells.append("")
            self._in_cell = True

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False
        elif tag == "tr" and self._cells is not None:
            if self._cells and self._row_key is not None:
                self.tables[self._table][self._row_key] = self._cells
            self._cells = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in_cell and self._cells:
            self._cells[-1] += data


def parse_report(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    return parser


CLASSES = ["Center", "Scratch", "none"]
MATRIX = [[8, 1, 1], [0, 5, 2], [0, 1, 12]]


def _data(blessed=False):
    evaluation = {
        "defect_recall": 0.8235294117647058,
        "false_alarm_rate": 0.07692307692307693,
        "class_names": CLASSES,
        "confusion_matrix": MATRIX,
        **class_metrics_from_confusion(np.array(MATRIX), CLASSES),
        "slices": {
            "overall": {"defect_score/defect_recall": 0.8235294117647058, "probabilities/example_count": 30.0},
            "label=Center": {"defect_score/defect_recall": 0.9, "probabilities/example_count": 10.0},
            "label=none": {"defect_score/defect_recall": float("nan"), "probabilities/example_count": 13.0},
        },
        "validation_ok": blessed,
        "validation_failures": [] if blessed else ["overall: defect_recall fails"],
    }
    wafer = np.full((20, 20), 128, np.uint8)
    return ReportData(
        class_names=CLASSES,
        normal_class="none",
        evaluation=evaluation,
        gate=GatePolicy(0.99, 0.1),
        blessed=blessed,
        operating_point={"threshold": 0.42, "defect_recall": 0.99, "false_alarm_rate": 0.05},
        history={
            "epoch": [0, 1, 2],
            "loss": [3.0, 2.0, 1.0],
            "val_loss": [3.5, 2.5, 2.0],
            "accuracy": [0.3, 0.6, 0.8],
            "val_accuracy": [0.2, 0.5, 0.7],
        },
        training_summary={"parameters": 1234, "training": {"model": "spanet", "target_defect_recall": 0.995}},
        data_summary={
            "examples_per_split_and_class": {
                "train": {"Center": 30, "Scratch": 20, "none": 40},
                "test": {"Center": 10, "Scratch": 7, "none": 13},
            },
            "examples_per_split": {"train": 90, "test": 30},
            "examples_total": 120,
            "lots_per_split": {"train": 9, "test": 3},
        },
        gallery=[
            GalleryItem(
                wafer,
                "Scratch",
                "none",
                0.7,
                0.2,
                "lot L1 wafer 02",
                "missed defect",
                explanation=np.linspace(0, 1, wafer.size).reshape(wafer.shape),
            )
        ],
        misclassified_total=6,
        gallery_confusion=MATRIX,
    )


@pytest.mark.parametrize("embed", [True, False])
def test_report_shows_every_class_with_the_numbers_it_was_given(tmp_path, embed):
    data = _data()
    path = render_report(data, str(tmp_path), embed_images=embed)
    page = parse_report(open(path, encoding="utf-8").read())

    per_class = page.tables["per-class"]
    assert sorted(per_class) == sorted(CLASSES)
    for name, metrics in data.evaluation["per_class"].items():
        _, precision, recall, f1, support = per_class[name]
        assert float(precision) == pytest.approx(metrics["precision"], abs=5e-5)
        assert float(recall) == pytest.approx(metrics["recall"], abs=5e-5)
        assert float(f1) == pytest.approx(metrics["f1"], abs=5e-5)
        assert int(support) == metrics["support"]
    assert [[int(v) for v in page.tables["confusion-matrix"][c][1:]] for c in CLASSES] == MATRIX
    assert float(page.tables["gate"]["defect_recall"][1]) == pytest.approx(0.8235, abs=5e-5)
    assert page.tables["gate"]["defect_recall"][3] == "fail"
    # Slices with a defined defect recall only (label=none has none).
    assert set(page.tables["defect-recall"]) == {"overall", "label=Center"}
    assert page.by_id["blessing"]["data-blessed"] == "False"
    assert float(page.by_id["operating-threshold"]["data-threshold"]) == 0.42
    assert page.by_id["gallery-check"]["data-consistent"] == "True"
    assert page.tables["class-balance"]["total"][1:] == ["90", "30", "120"]

    # Every image resolves: a PNG data URI, or a PNG file beside the page.
    assert len(page.images) == 7  # slices, confusion, class metrics, curves, 1 wafer and its explanation, class balance
    for image in page.images:
        source = image["src"]
        if embed:
            assert source.startswith("data:image/png;base64,")
            picture = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        else:
            assert not source.startswith(("http:", "https:", "/"))
            picture = Image.open(os.path.join(tmp_path, source))
        assert picture.size[0] >= 20 and picture.size[1] >= 20


def _gated_data(too_few="report"):
    """_data() with the summary's exact-bounds gate: overall 3 misses in 17, Center judged, Scratch too few."""
    from components import clopper_pearson as cp

    data = _data()
    gate = {
        "min_defect_recall": 0.99,
        "confidence": 0.95,
        "interval_confidence": 0.95,
        "min_slice_support": 10,
        "too_few": too_few,
        "max_false_alarm_rate": 0.1,
    }
    overall = {
        "defect_recall": 14 / 17,
        "lower_bound": cp.lower_bound(14, 17),
        "interval": list(cp.interval(14, 17)),
        "support": 17,
        "misses": 3,
        "rule": "lower bound",
        "verdict": "fail",
        "defects_needed": 773,
        "false_alarm_rate": 1 / 13,
        "false_alarm_interval": list(cp.interval(1, 13)),
        "normal_support": 13,
        "false_alarms": 1,
    }
    center = {
        "slice": "label=Center",
        "defect_recall": 0.9,
        "interval": list(cp.interval(9, 10)),
        "support": 10,
        "misses": 1,
        "rule": "point estimate (n >= 10)",
        "verdict": "fail",
    }
    scratch = {
        "slice": "label=Scratch",
        "defect_recall": 5 / 7,
        "interval": list(cp.interval(5, 7)),
        "support": 7,
        "misses": 2,
        "rule": "too few to judge (n < 10)",
        "verdict": "too few to judge" if too_few == "report" else "fail",
    }
    data.evaluation.update(
        {
            "defect_recall_lower_bound": overall["lower_bound"],
            "overall": overall,
            "gate": gate,
            "gated_slices": [
                {
                    "slice": "overall",
                    **{k: overall[k] for k in ("defect_recall", "interval", "support", "misses", "rule", "verdict")},
                },
                center,
                scratch,
            ],
            "too_few_to_judge": ["label=Scratch"],
        }
    )
    data.evaluation["slices"]["label=Scratch"] = {
        "defect_score/defect_recall": 5 / 7,
        "probabilities/example_count": 7.0,
    }
    return data


@pytest.mark.parametrize("too_few", ["report", "refuse"])
def test_report_shows_intervals_supports_rules_and_too_few_slices(tmp_path, too_few):
    data = _gated_data(too_few)
    path = render_report(data, str(tmp_path), embed_images=False)
    text = open(path, encoding="utf-8").read()
    page = parse_report(text)
    overall = data.evaluation["overall"]
    bound, (low, high) = overall["lower_bound"], overall["interval"]
    gate = page.tables["gate"]
    assert gate["defect_recall"][1:] == [
        "0.8235",
        "\u2265 0.99",
        "fail",
        f"[{low:.4f}, {high:.4f}]",
        "17 defective (3 missed)",
        "95% one-sided lower bound \u2265 0.99",
    ]
    assert gate["defect_recall_lower_bound"][1] == f"{bound:.4f}" and gate["defect_recall_lower_bound"][3] == "fail"
    low, high = overall["false_alarm_interval"]
    assert gate["false_alarm_rate"][4:6] == [f"[{low:.4f}, {high:.4f}]", "13 normal (1 flagged)"]
    assert float(page.by_id["lower-bound-note"]["data-lower-bound"]) == pytest.approx(bound)
    assert "from 773 defective test wafers" in text

    slices = page.tables["defect-recall"]
    assert list(slices) == ["overall", "label=Center", "label=Scratch"]  # gated slices first, in gate order
    low, high = overall["interval"]
    assert slices["overall"][2:] == ["0.8235", f"[{low:.4f}, {high:.4f}]", "17", "3", "lower bound", "fail"]
    assert slices["label=Center"][4:] == ["10", "1", "point estimate (n >= 10)", "fail"]
    # The small slice is neither passed nor failed on its recall: it is too few to judge (or refused).
    expected = "too few to judge" if too_few == "report" else "fail"
    assert slices["label=Scratch"][4:] == ["7", "2", "too few to judge (n < 10)", expected]
    assert '<tr data-slice="label=Scratch" class="too-few">' in text
    assert page.by_id["too-few"]["data-slices"] == "label=Scratch"
    assert ("not gated" in text) == (too_few == "report") and ("refuses the blessing" in text) == (too_few == "refuse")


# ---------------------------------------------------------------- the tiny pipeline run's report


@pytest.fixture(scope="module")
def run_report(tiny_pipeline_run):
    """(results, the Evaluator's numbers, the parsed report page, report.html's path)."""
    from components.eval_summary import summarize_evaluation

    results = tiny_pipeline_run.results
    assert results.report_uri, "the pipeline run recorded no EvaluationReport artifact"
    assert os.path.isfile(results.report_path)
    class_names = results.training_summary["class_names"]  # the model's order; the report lists the configured one
    evaluation = summarize_evaluation(results.evaluation_uri, class_names, tiny_pipeline_run.config.display_classes)
    page = parse_report(open(results.report_path, encoding="utf-8").read())
    return results, evaluation, page, results.report_path


@pytest.mark.slow
def test_run_report_has_every_class_and_the_evaluators_numbers(run_report, tiny_pipeline_run):
    import json

    from components.report.data import REPORT_JSON

    results, evaluation, page, _ = run_report
    class_names = evaluation["class_names"]
    assert sorted(class_names) == sorted(tiny_pipeline_run.config.class_names)
    for table in ("per-class", "confusion-matrix"):
        assert sorted(page.tables[table]) == sorted(class_names), table
    assert set(class_names) <= set(page.tables["class-balance"])
    for name, metrics in evaluation["per_class"].items():
        _, precision, recall, f1, support = page.tables["per-class"][name]
        assert [float(precision), float(recall), float(f1)] == pytest.approx(
            [metrics["precision"], metrics["recall"], metrics["f1"]], abs=5e-5
        )
        assert int(support) == metrics["support"]
    assert list(page.tables["per-class"]) == list(tiny_pipeline_run.config.class_names)  # the configured order
    shown = [[int(v) for v in page.tables["confusion-matrix"][c][1:]] for c in class_names]
    assert shown == evaluation["confusion_matrix"]
    gate = page.tables["gate"]
    for key in ("defect_recall", "false_alarm_rate", "accuracy", "macro_f1"):
        assert float(gate[key][1]) == pytest.approx(evaluation[key], abs=5e-5), key
    overall = page.tables["defect-recall"]["overall"]
    assert float(overall[2]) == pytest.approx(evaluation["defect_recall"], abs=5e-5)
    assert page.by_id["blessing"]["data-blessed"] == str(results.blessed)
    threshold = results.training_summary["operating_point"]["threshold"]
    assert float(page.by_id["operating-threshold"]["data-threshold"]) == pytest.approx(threshold)
    # The gallery's own run of the exported model agrees with the Evaluator's confusion matrix.
    assert page.by_id["gallery-check"]["data-consistent"] == "True"

    numbers = json.load(open(os.path.join(results.report_uri, REPORT_JSON), encoding="utf-8"))
    for key in ("defect_recall", "false_alarm_rate", "accuracy", "macro_f1", "per_class", "confusion_matrix"):
        assert numbers["evaluation"][key] == evaluation[key], key
    assert numbers["blessed"] == results.blessed


@pytest.mark.slow
def test_run_report_header_names_the_run_the_pushed_version_and_the_data(run_report, tiny_pipeline_run):
    import json

    from components.report.data import REPORT_JSON

    results, _, page, _ = run_report
    header = page.tables["header"]
    assert os.path.basename(results.pushed_path) in header["pushed"][1] and results.pushed_path in header["pushed"][1]
    config = tiny_pipeline_run.config
    assert config.resolved_data_path in header["data"][1]
    assert f"{results.quarantine_summary['examples_total']} wafers" in header["data"][1]
    run = json.load(open(os.path.join(results.report_uri, REPORT_JSON), encoding="utf-8"))["run"]
    assert run["pushed"] and run["pushed_version"] == os.path.basename(results.pushed_path)
    assert run["run_id"] and run["run_id"] in header["run_id"][1] and run["date"] in header["date"][1]
    assert run["data_bytes"] == sum(
        os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(config.resolved_data_path) for n in ns
    )


@pytest.mark.slow
def test_run_report_has_precision_recall_and_reliability_from_the_test_split(run_report, tiny_pipeline_run):
    import json

    from components.report.data import REPORT_JSON

    results, evaluation, page, report_path = run_report
    curves = json.load(open(os.path.join(results.report_uri, REPORT_JSON), encoding="utf-8"))["curves"]
    tested = {name for name, metrics in evaluation["per_class"].items() if metrics["support"]}
    assert set(page.tables["average-precision"]) == tested == set(curves["average_precision"])
    for value in curves["average_precision"].values():
        assert 0.0 <= value <= 1.0
    for key in ("predicted_class", "defect"):
        assert sum(curves["calibration"][key]["count"]) == sum(m["support"] for m in evaluation["per_class"].values())
    images = os.path.join(os.path.dirname(report_path), "images")
    assert {"precision_recall.png", "reliability.png"} <= set(os.listdir(images))


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_run_report_opens_in_headless_chromium_with_every_image(run_report, tmp_path):
    import subprocess

    browser = _chromium()
    if not browser:
        pytest.skip("headless Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    _, _, page, path = run_report
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = "file://" + os.path.abspath(path)
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = parse_report(dom.stdout)
    assert len(rendered.images) == len(page.images) >= 5
    # The page's own check marks each image loaded (complete, with a width) after the load event.
    assert [image.get("data-loaded") for image in rendered.images] == ["true"] * len(page.images)
    for image in rendered.images:
        source = image["src"]
        assert source.startswith("data:image/png;base64,") or os.path.isfile(
            os.path.join(os.path.dirname(path), source)
        )

    shot = tmp_path / "report.png"
    result = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 5, "the screenshot is blank"


def test_reliability_bins_and_ece_match_a_hand_count():
    from components.report.curves import reliability, split_curves

    confidence = np.array([0.05, 0.15, 0.95, 0.95, 0.95, 0.95])
    correct = np.array([0, 0, 1, 1, 1, 0])
    numbers = reliability(confidence, correct, bins=10)
    assert numbers["count"] == [1, 1, 4] and numbers["accuracy"] == pytest.approx([0.0, 0.0, 0.75])
    # |0 - 0.05| + |0 - 0.15| + 4 |0.75 - 0.95|, over 6 wafers
    assert numbers["ece"] == pytest.approx((0.05 + 0.15 + 4 * 0.2) / 6)
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    truth = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    curves = split_curves(probabilities, truth, ["none", "Scratch"], "none")
    assert curves["average_precision"] == pytest.approx({"none": 1.0, "Scratch": 1.0})
    assert curves["calibration"]["predicted_class"]["examples"] == 4
    assert sum(curves["calibration"]["defect"]["count"]) == 4
    # A long curve is thinned to the same points in both columns (a default run has thousands of scores).
    rng = np.random.default_rng(0)
    scores = rng.random((5000, 2))
    truth = np.eye(2, dtype=int)[rng.integers(0, 2, 5000)]
    for points in split_curves(scores, truth, ["none", "Scratch"], "none")["points"].values():
        assert len(points["precision"]) == len(points["recall"]) <= 202


def test_a_hundred_classes_render_with_every_class_in_the_tables_and_bounded_plots(tmp_path):
    from dataclasses import replace

    from PIL import Image

    names = [f"defect_{i:02d}" for i in range(99)] + ["none"]
    rng = np.random.default_rng(0)
    matrix = (np.eye(100, dtype=np.int64) * 9 + rng.integers(0, 2, (100, 100))).tolist()
    data = _data()
    evaluation = {
        **data.evaluation,
        "class_names": names,
        "confusion_matrix": matrix,
        **class_metrics_from_confusion(np.array(matrix), names),
    }
    data = replace(data, class_names=names, evaluation=evaluation, gallery_confusion=matrix)
    report = parse_report(open(render_report(data, str(tmp_path), embed_images=False)).read())
    assert set(report.tables["confusion-matrix"]) == set(names) and set(report.tables["per-class"]) == set(names)
    for picture in ("confusion_matrix.png", "class_metrics.png"):
        width, height = Image.open(tmp_path / "images" / picture).size
        assert max(width, height) <= 30 * 110, (picture, width, height)  # 18-27 inches at 110 dpi, not 57


def test_multilabel_report_has_the_exact_match_and_per_pattern_rows_and_no_confusion_matrix(tmp_path):
    from dataclasses import replace

    patterns = ["Center", "Scratch"]
    per_class = {
        "Center": {"precision": 0.9, "recall": 0.95, "f1": 0.92, "support": 40},
        "Scratch": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 30},
    }
    data = _data()
    evaluation = {
        **data.evaluation,
        "class_names": patterns,
        "multilabel": True,
        "confusion_matrix": [],
        "per_class": per_class,
        "accuracy": 0.875,
        "macro_f1": 0.835,
    }
    history = {k: v for k, v in data.history.items() if "accuracy" not in k}  # a multi-label model logs none
    data = replace(data, class_names=patterns, evaluation=evaluation, history=history)
    report = parse_report(open(render_report(data, str(tmp_path), embed_images=False)).read())
    assert "exact-match" in report.by_id and "confusion-matrix" not in report.tables
    assert report.tables["per-class"]["Scratch"] == ["Scratch", "0.8000", "0.7000", "0.7500", "30"]


def test_model_card_states_use_data_metrics_with_intervals_the_decision_and_limitations(tmp_path):
    from dataclasses import replace

    from components.report.model_card import MODEL_CARD_HTML, copy_beside_model, write_model_card

    data = _data(blessed=False)
    evaluation = {
        **data.evaluation,
        "defect_recall_lower_bound": 0.71,
        "overall": {
            "support": 17,
            "misses": 3,
            "interval": [0.566, 0.962],
            "confidence": 0.95,
            "interval_confidence": 0.95,
            "false_alarm_interval": [0.002, 0.36],
            "normal_support": 13,
        },
        "gate": {"min_defect_recall": 0.99, "min_slice_support": 30, "max_false_alarm_rate": 0.1},
        "too_few_to_judge": ["label=Scratch"],
    }
    data = replace(
        data,
        evaluation=evaluation,
        data_summary={**data.data_summary, "data_path": "/d/synthetic-1", "data_format": "png"},
    )
    path = write_model_card(data, str(tmp_path / "report"))
    card = open(path).read()
    for heading in ("## Intended use", "## Data", "## Metrics on the test split", "## The gate", "## Limitations"):
        assert heading in card
    assert "**Refused** by the gate" in card and "- overall: defect_recall fails" in card
    assert "| defect recall | 0.8235 | [0.5660, 0.9620] | 17 defective (3 missed) |" in card
    assert "| Scratch | " in card and "label=Scratch" in card and "synthetic wafer maps" in card
    page = open(tmp_path / "report" / MODEL_CARD_HTML).read()
    assert "<table>" in page and "<h2>Limitations</h2>" in page
    version = tmp_path / "serving" / "7"
    version.mkdir(parents=True)
    copied = copy_beside_model(str(tmp_path / "report"), str(version))
    assert copied == str(version / "assets.extra" / "model_card.md") and open(copied).read() == card
    assert copy_beside_model(str(tmp_path), str(version)) is None  # a folder without a card
