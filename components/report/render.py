"""The HTML page of a run report, from plain data (no TFX): ``render_report(data, out_dir)``.

One function per section turns :class:`ReportData` (and the verdicts ``components.report.verdicts``
decided) into the values a Jinja2 template (``templates/report.html.j2``) lays out; the plots come
from ``components.report.plots``. The page is self-contained: every plot is also written as a PNG
beside ``report.html`` and embedded in it as a base64 data URI, so the HTML alone opens offline (and
can be mailed), while the PNGs stay reusable.
"""

import base64
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from markupsafe import Markup

from components.report.data import REPORT_HTML, GalleryItem, ReportData
from components.report.plots import (
    plot_class_balance,
    plot_class_metrics,
    plot_confusion_matrix,
    plot_precision_recall,
    plot_reliability,
    plot_slice_recall,
    plot_training_curves,
    save_wafer_image,
)
from components.report.templating import template
from components.report.verdicts import Verdicts, decide, slice_recalls, slice_rows
from spanet.explain import overlay

#: Folder of the report's PNGs inside a report folder.
IMAGES_DIR = "images"
REPORT_TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Image:
    """An <img>: its source (a data URI, or a path relative to the page) and alternative text."""

    src: str
    alt: str


def fmt(value: Optional[float], digits: int = 4) -> str:
    """A metric as the report prints it (4 decimals; n/a for a missing or NaN value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def interval_text(interval: Optional[Sequence[Optional[float]]], digits: int = 4) -> str:
    """A two-sided interval as the report prints it: [low, high] (n/a when unknown)."""
    low, high = (list(interval or []) + [None, None])[:2]
    if low is None or high is None:
        return "n/a"
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def _count_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(int(round(float(value))))


def _verdict(passed: Optional[bool]) -> Markup:
    if passed is None:
        return Markup("")
    return Markup('<span class="pass">pass</span>' if passed else '<span class="fail">fail</span>')


def _size_text(size: Optional[int]) -> str:
    if size is None:
        return "n/a"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


class _Pictures:
    """Writes the report's PNGs under ``out_dir/images`` and makes their <img> sources."""

    def __init__(self, out_dir: str, embed: bool):
        self.out_dir, self.embed = out_dir, embed

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, IMAGES_DIR, name)

    def image(self, path: str, alt: str) -> Image:
        if self.embed:
            with open(path, "rb") as handle:
                return Image("data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii"), alt)
        return Image(os.path.relpath(path, self.out_dir).replace(os.sep, "/"), alt)

    def plot(self, draw: Callable[[str], str], name: str, alt: str) -> Image:
        return self.image(draw(self.path(name)), alt)


def header_section(run: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """When, which run, what was pushed where, and from which data."""
    if not run:
        return None
    pushed = (
        f"version {run.get('pushed_version')} at {run.get('pushed_path')}"
        if run.get("pushed")
        else "nothing was pushed"
    )
    data = f"{run.get('data_path') or 'n/a'}: {run.get('data_examples', 'n/a')} wafers, "
    data += _size_text(run.get("data_bytes"))
    rows = [
        ["run date", str(run.get("date", ""))],
        ["pipeline run", str(run.get("run_id", ""))],
        ["pushed model", pushed],
        ["data", data],
    ]
    return {"rows": rows, "row_keys": ["date", "run_id", "pushed", "data"]}


def blessing_section(blessed: Optional[bool]) -> Dict[str, Any]:
    return {
        "blessed": blessed,
        "text": {True: "BLESSED", False: "NOT BLESSED", None: "unknown"}[blessed],
        "css": "pass" if blessed else "fail",
    }


def gate_section(evaluation: Mapping[str, Any], verdicts: Verdicts) -> Dict[str, Any]:
    """The gate table, the lower bound's explanation and the Evaluator's own failure messages."""
    settings = verdicts.settings
    rows = [
        [
            row.label,
            fmt(row.value),
            row.bound,
            _verdict(row.passed),
            interval_text(row.interval) if row.has_interval else "",
            row.support,
            row.rule,
        ]
        for row in verdicts.gate_rows
    ]
    header = [
        "metric (test split)",
        "value",
        "gate",
        "",
        f"{settings['interval_confidence']:.0%} interval",
        "support",
        "rule",
    ]
    overall = evaluation.get("overall") or {}
    bound = overall.get("lower_bound", evaluation.get("defect_recall_lower_bound"))
    support = overall.get("support")
    note = None
    if bound is not None and support is not None:
        note = {
            "bound": bound,
            "bound_text": fmt(bound),
            "support": support,
            "misses": overall.get("misses"),
            "recall": fmt(evaluation.get("defect_recall")),
            "confidence": f"{settings['confidence']:.0%}",
            "minimum": f"{settings['min_defect_recall']:g}",
            "needed": overall.get("defects_needed"),
        }
    return {
        "header": header,
        "rows": rows,
        "row_keys": [row.key for row in verdicts.gate_rows],
        "bound_note": note,
        "failures": evaluation.get("validation_failures") or [],
    }


def threshold_section(data: ReportData) -> Optional[Dict[str, Any]]:
    point = data.operating_point
    if not point:
        return None
    target = point.get("target_defect_recall", data.training_summary.get("training", {}).get("target_defect_recall"))
    return {
        "value": point.get("threshold"),
        "text": fmt(point.get("threshold")),
        "normal": data.normal_class,
        "target": fmt(target),
        "recall": fmt(point.get("defect_recall")),
        "far": fmt(point.get("false_alarm_rate")),
    }


def unknown_section(summary: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    if "familiarity_threshold" not in summary:
        return None
    return {
        "value": summary["familiarity_threshold"],
        "text": fmt(summary["familiarity_threshold"]),
        "max_rate": fmt(summary.get("training", {}).get("max_unknown_rate"), 3),
        "normal_rate": fmt(summary.get("eval_unknown_rate_normal")),
        "rate": fmt(summary.get("eval_unknown_rate")),
    }


def slices_section(verdicts: Verdicts, pictures: _Pictures) -> Optional[Dict[str, Any]]:
    """The per-slice table (rule and verdict of each), the too-few list and the chart."""
    rows_data, settings = verdicts.slice_rows, verdicts.settings
    if not rows_data:
        return None
    minimum, min_support = settings["min_defect_recall"], settings.get("min_slice_support")
    policy = settings.get("too_few", "report")
    too_few = verdicts.too_few
    rows = []
    for r in rows_data:
        verdict = r.get("verdict", "")
        if verdict == "too few to judge":
            cell = Markup('<span class="few">too few to judge</span>')
        elif verdict in ("pass", "fail"):
            cell = _verdict(verdict == "pass")
        else:
            cell = str(verdict)
        rows.append(
            [
                r["slice"],
                str(r.get("examples", "")),
                fmt(r.get("defect_recall")),
                interval_text(r.get("interval")),
                _count_text(r.get("support")),
                _count_text(r.get("misses")),
                str(r.get("rule", "")),
                cell,
            ]
        )
    policy_text = None
    if min_support is not None:
        features = sorted(
            {
                r["slice"].split("=")[0]
                for r in rows_data
                if r.get("gated") and "=" in r["slice"] and not r["slice"].startswith("label=")
            }
        )
        rule = "it is not gated, and is listed as such." if policy == "report" else "it refuses the blessing."
        policy_text = (
            f"Overall is judged on its {settings['confidence']:.0%} lower bound; each defect class"
            + (f" and each value of {', '.join(features)}" if features else "")
            + f" on its point estimate when it has at least {min_support} defective wafers. "
            f"A smaller slice is too few to judge: {rule}"
        )
    plotted = [
        (r["slice"], r["defect_recall"])
        for r in rows_data
        if r.get("defect_recall") is not None and not math.isnan(r["defect_recall"])
    ]
    plot = None
    if plotted:
        intervals = {r["slice"]: r.get("interval") for r in rows_data}
        plot = pictures.plot(
            lambda path: plot_slice_recall(plotted, minimum, path, intervals, too_few),
            "defect_recall_slices.png",
            "defect recall per slice",
        )
    header = [
        "slice",
        "examples",
        "defect recall",
        f"{settings['interval_confidence']:.0%} interval",
        "defective",
        "missed",
        "rule",
        f"≥ {minimum:g}",
    ]
    return {
        "header": header,
        "rows": rows,
        "row_keys": [r["slice"] for r in rows_data],
        "row_classes": ["too-few" if r["slice"] in too_few else "" for r in rows_data],
        "too_few": too_few,
        "min_support": min_support,
        "policy": policy,
        "policy_text": policy_text,
        "plot": plot,
    }


def classes_section(evaluation: Mapping[str, Any], classes: List[str], pictures: _Pictures) -> Dict[str, Any]:
    """The confusion matrix (single-label) or the exact-match rate (multi-label), and per-class metrics."""
    multilabel = bool(evaluation.get("multilabel"))
    section: Dict[str, Any] = {"multilabel": multilabel, "accuracy": fmt(evaluation.get("accuracy")), "names": classes}
    if not multilabel:
        matrix = evaluation.get("confusion_matrix") or [[0] * len(classes) for _ in classes]
        section["matrix_header"] = ["true \\ predicted"] + classes
        section["matrix_rows"] = [[c] + [str(int(v)) for v in row] for c, row in zip(classes, matrix)]
        section["matrix_plot"] = pictures.plot(
            lambda path: plot_confusion_matrix(matrix, classes, path), "confusion_matrix.png", "confusion matrix"
        )
    per_class = evaluation.get("per_class", {})
    section["metric_rows"] = [
        [c, fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]), str(m["support"])] for c, m in per_class.items()
    ]
    section["metric_keys"] = list(per_class)
    section["metrics_plot"] = (
        pictures.plot(lambda path: plot_class_metrics(per_class, path), "class_metrics.png", "per-class metrics")
        if per_class
        else None
    )
    return section


def curves_section(curves: Mapping[str, Any], pictures: _Pictures) -> Optional[Dict[str, Any]]:
    """Per-class precision-recall curves (average precision in a table) and the reliability diagram."""
    if not curves:
        return None
    average = curves.get("average_precision") or {}
    calibration = curves.get("calibration") or {}
    section: Dict[str, Any] = {"ap_rows": [[n, fmt(v)] for n, v in average.items()], "ap_keys": list(average)}
    if average:
        section["pr_plot"] = pictures.plot(
            lambda path: plot_precision_recall(curves["points"], average, path),
            "precision_recall.png",
            "precision-recall curves",
        )
    if calibration:
        section["eces"] = ", ".join(
            f"{key.replace('_', ' ')} {numbers['ece']:.3f}" for key, numbers in calibration.items()
        )
        section["reliability_plot"] = pictures.plot(
            lambda path: plot_reliability(calibration, path), "reliability.png", "reliability diagram"
        )
    return section


def training_section(
    summary: Mapping[str, Any], history: Mapping[str, Sequence[float]], pictures: _Pictures
) -> Dict[str, Any]:
    facts = []
    if summary:
        training = summary.get("training", {})
        facts = [
            ["network", str(training.get("model"))],
            ["width", str(training.get("width"))],
            ["r", str(training.get("r"))],
            ["parameters", f"{summary.get('parameters', 0):,}"],
            ["epochs run", str(summary.get("epochs_run"))],
            ["train / eval examples", f"{summary.get('train_examples')} / {summary.get('eval_examples')}"],
            ["optimizer / schedule", f"{training.get('optimizer')} / {training.get('schedule')}"],
            ["probability scale", fmt(summary.get("probability_scale"), 3)],
        ]
    plot = (
        pictures.plot(lambda path: plot_training_curves(history, path), "training_curves.png", "training curves")
        if history
        else None
    )
    return {"facts": facts, "plot": plot}


def gallery_section(
    items: Sequence[GalleryItem], total: int, consistent: Optional[bool], pictures: _Pictures
) -> Dict[str, Any]:
    """The misclassified wafers, each with its explanation overlay when the model gave one."""
    shown = []
    for index, item in enumerate(items):
        wafer = save_wafer_image(item.image, pictures.path(os.path.join("gallery", f"wafer_{index:03d}.png")))
        drawn = None
        if item.explanation is not None:
            path = pictures.path(os.path.join("gallery", f"wafer_{index:03d}_explained.png"))
            drawn = pictures.image(
                save_wafer_image(overlay(item.image, item.explanation), path),
                f"which dies drove the call {item.predicted_class}",
            )
        shown.append(
            {
                "true_class": item.true_class,
                "predicted_class": item.predicted_class,
                "kind": item.kind,
                "confidence": f"{item.confidence:.2f}",
                "defect_score": f"{item.defect_score:.2f}",
                "ref": item.ref,
                "explained": item.explanation is not None,
                "overlay": drawn,
                "wafer": pictures.image(wafer, f"{item.true_class} predicted as {item.predicted_class}"),
            }
        )
    return {
        "wafers": shown,
        "shown": f"{len(items)} of {total}" if total > len(items) else f"all {total}",
        "explained": any(item["explained"] for item in shown),
        "consistent": consistent,
    }


def data_section(data_summary: Mapping[str, Any], classes: List[str], pictures: _Pictures) -> Optional[Dict[str, Any]]:
    """Examples per split and class (with totals and lots), the balance chart, the records not ingested."""
    per_split = data_summary.get("examples_per_split_and_class", {})
    if not per_split:
        return None
    splits = list(per_split)
    names = classes + sorted({c for s in splits for c in per_split[s]} - set(classes))
    rows: List[List[Any]] = [
        [n] + [str(per_split[s].get(n, 0)) for s in splits] + [str(sum(per_split[s].get(n, 0) for s in splits))]
        for n in names
    ]
    totals = data_summary.get("examples_per_split", {})
    rows.append(
        [Markup("<b>total</b>")]
        + [str(totals.get(s, sum(per_split[s].values()))) for s in splits]
        + [str(data_summary.get("examples_total", ""))]
    )
    lots = data_summary.get("lots_per_split", {})
    if lots:
        rows.append(["lots"] + [str(lots.get(s, "")) for s in splits] + [str(sum(lots.values()))])
    rejected = data_summary.get("rejected_total", {})
    return {
        "path": str(data_summary.get("data_path", "")),
        "format": str(data_summary.get("data_format", "")),
        "header": ["class"] + splits + ["all"],
        "rows": rows,
        "row_keys": names + ["total"] + (["lots"] if lots else []),
        "plot": pictures.plot(
            lambda path: plot_class_balance(per_split, classes, path), "class_balance.png", "class balance"
        ),
        "rejected": ", ".join(f"{k} {v}" for k, v in rejected.items()),
    }


STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
.pass{color:#060;font-weight:bold}.fail{color:#b00;font-weight:bold}.few{color:#a60;font-weight:bold}
tr.too-few td{background:#fff4e0}
.verdict{font-size:1.3em;padding:0.5em 1em;display:inline-block;border:2px solid}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure.wafer{margin:0;width:250px;font-size:12px;text-align:center}
figure.wafer img{width:112px;margin:0 2px}
.header td{text-align:left}
figure.wafer img{image-rendering:pixelated;border:1px solid #999}
.tag{color:#b00;font-weight:bold}
img{max-width:100%}
"""


#: Marks each image loaded or not once the page has loaded, and warns on the page about a broken
#: one (no network involved: it only reads the images' own state). Tests read the marks.
IMAGE_CHECK = """<script>window.addEventListener('load', function () {
  var broken = 0;
  document.querySelectorAll('img').forEach(function (img) {
    var ok = img.complete && img.naturalWidth > 0;
    img.setAttribute('data-loaded', ok ? 'true' : 'false');
    if (!ok) { broken += 1; }
  });
  if (broken) {
    var note = document.createElement('p');
    note.className = 'fail';
    note.textContent = broken + ' image(s) of this report could not be loaded.';
    document.body.insertBefore(note, document.body.firstChild);
  }
});</script>"""


def render_report(data: ReportData, out_dir: str, embed_images: bool = True) -> str:
    """Writes ``report.html`` and its PNGs under ``out_dir``; returns the HTML's path."""
    os.makedirs(os.path.join(out_dir, IMAGES_DIR), exist_ok=True)
    evaluation = data.evaluation
    classes = list(evaluation.get("class_names") or data.class_names)
    verdicts = data.verdicts or decide(data)
    pictures = _Pictures(out_dir, embed_images)
    page = template(REPORT_TEMPLATE, html=True).render(
        title=data.title,
        style=Markup(STYLE),
        image_check=Markup(IMAGE_CHECK),
        header=header_section(data.run),
        blessing=blessing_section(data.blessed),
        gate=gate_section(evaluation, verdicts),
        threshold=threshold_section(data),
        unknown=unknown_section(data.training_summary),
        slices=slices_section(verdicts, pictures),
        classes=classes_section(evaluation, classes, pictures),
        curves=curves_section(data.curves, pictures),
        training=training_section(data.training_summary, data.history, pictures),
        gallery=gallery_section(data.gallery, data.misclassified_total, verdicts.gallery_consistent, pictures),
        data=data_section(data.data_summary, classes, pictures),
        sources=[[k, v] for k, v in data.sources.items()],
    )
    path = os.path.join(out_dir, REPORT_HTML)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path


__all__ = ["REPORT_HTML", "render_report", "fmt", "interval_text", "slice_rows", "slice_recalls"]
