"""Plots and the HTML page of a run report, from plain data (no TFX): ``render_report(data, out_dir)``.

The page is self-contained: every plot is also written as a PNG beside ``report.html`` and
embedded in it as a base64 data URI, so the HTML alone opens offline (and can be mailed),
while the PNGs stay reusable. Experiments reuse the plotting helpers (``new_axes``, ``save_figure``).
"""

import base64
import html
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only: no display on build machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


from components.report.data import REPORT_HTML, GalleryItem, ReportData  # noqa: E402
from spanet.data.imageio import save_enlarged_png  # noqa: E402
from spanet.explain import overlay  # noqa: E402

#: File names inside a report folder.
IMAGES_DIR = "images"
#: Metric keys of ``summarize_evaluation``'s slices.
DEFECT_RECALL_KEY = "defect_score/defect_recall"
FALSE_ALARM_KEY = "defect_score/false_alarm_rate"
EXAMPLE_COUNT_KEY = "probabilities/example_count"
#: Pixels per die in the gallery (wafer maps are one pixel per die).
GALLERY_PIXELS = 112
PLOT_DPI = 110


def new_axes(width: float = 6.0, height: float = 4.0, ncols: int = 1) -> Tuple[plt.Figure, Any]:
    """A figure with ``ncols`` axes side by side (one Axes when ncols is 1)."""
    figure, axes = plt.subplots(1, ncols, figsize=(width, height))
    return figure, axes


#: Class plots grow with the number of classes up to this size (100 classes would otherwise make a
#: 57-inch figure); beyond MAX_ANNOTATED_CLASSES the matrix cells carry no numbers.
MAX_FIGURE_INCHES = 18.0
MAX_ANNOTATED_CLASSES = 30


def _tick_fontsize(count: int) -> float:
    """Tick labels shrink from 10 points once more classes than fit at that size share an axis."""
    return float(np.clip(10.0 * 25 / max(count, 1), 4.0, 10.0))


def save_figure(figure: plt.Figure, path: str) -> str:
    """Writes the figure as a PNG and closes it; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str,
                          title: str = "Confusion matrix (test split)") -> str:
    """Counts per (true, predicted) class, shaded by the share of each true class."""
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    size = min(2.0 + 0.55 * len(class_names), MAX_FIGURE_INCHES)
    figure, axes = new_axes(size + 1.0, size)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if len(class_names) <= MAX_ANNOTATED_CLASSES:  # beyond, the counts are in the table beside the plot
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                if counts[i, j]:
                    axes.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                              color="white" if shares[i, j] > 0.6 else "black")
    ticks = _tick_fontsize(len(class_names))
    axes.set_xticks(range(len(class_names)), class_names, rotation=45 if ticks >= 8 else 90, ha="right", fontsize=ticks)
    axes.set_yticks(range(len(class_names)), class_names, fontsize=ticks)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    return save_figure(figure, path)


def plot_class_metrics(per_class: Mapping[str, Mapping[str, float]], path: str) -> str:
    """Precision, recall and F1 per class, as grouped bars."""
    names = list(per_class)
    x = np.arange(len(names))
    figure, axes = new_axes(min(max(6.0, 0.8 * len(names) + 2), MAX_FIGURE_INCHES * 1.5), 4.0)
    for offset, metric in zip((-0.27, 0.0, 0.27), ("precision", "recall", "f1")):
        axes.bar(x + offset, [per_class[n][metric] for n in names], width=0.27, label=metric)
    ticks = _tick_fontsize(len(names))
    axes.set_xticks(x, names, rotation=45 if ticks >= 8 else 90, ha="right", fontsize=ticks)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("test split")
    axes.set_title("Per-class precision, recall and F1")
    axes.legend(loc="lower right", fontsize=8)
    return save_figure(figure, path)


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str) -> str:
    """Loss and accuracy per epoch (train and eval split), plus the learning rate when logged."""
    epochs = list(history.get("epoch", range(len(next(iter(history.values()), [])))))
    panels = [("loss", ("loss", "val_loss"))]
    if "accuracy" in history or "val_accuracy" in history:  # a multi-label model logs no accuracy
        panels.append(("accuracy", ("accuracy", "val_accuracy")))
    if "lr" in history or "learning_rate" in history:
        panels.append(("learning rate", ("lr", "learning_rate")))
    figure, axes = new_axes(4.2 * len(panels), 3.5, ncols=len(panels))
    for axis, (title, keys) in zip(np.atleast_1d(axes), panels):
        for key in keys:
            if key in history:
                label = {"loss": "train", "accuracy": "train", "val_loss": "eval", "val_accuracy": "eval"}.get(key, key)
                axis.plot(epochs, history[key], marker="o", markersize=3, label=label)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        if title == "loss":
            axis.set_yscale("log")
        if title != "learning rate":
            axis.legend(fontsize=8)
    return save_figure(figure, path)


def plot_class_balance(per_split_and_class: Mapping[str, Mapping[str, int]], class_names: Sequence[str], path: str) -> str:
    """Examples per class, stacked by split."""
    splits = list(per_split_and_class)
    names = list(class_names) + sorted({c for s in splits for c in per_split_and_class[s]} - set(class_names))
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    figure, axes = new_axes(max(6.0, 0.8 * len(names) + 2), 4.0)
    for split in splits:
        values = np.array([per_split_and_class[split].get(n, 0) for n in names], dtype=float)
        axes.bar(x, values, bottom=bottom, label=f"{split} ({int(values.sum())})")
        bottom += values
    axes.set_xticks(x, names, rotation=45, ha="right")
    axes.set_ylabel("examples")
    axes.set_title("Class balance by split")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def plot_slice_recall(recalls: Sequence[Tuple[str, float]], threshold: float, path: str,
                      intervals: Optional[Mapping[str, Sequence[Optional[float]]]] = None,
                      too_few: Sequence[str] = ()) -> str:
    """Defect recall per slice against the gate's threshold (bars below it in red).

    ``intervals``: {slice: (low, high)} drawn as error bars; slices in ``too_few`` (too few
    defective wafers to judge) are drawn grey and labelled so, whatever their value.
    """
    names = [name for name, _ in recalls]
    values = [value for _, value in recalls]
    few = set(too_few)
    figure, axes = new_axes(7.0, 0.9 + 0.35 * max(1, len(names)))
    colours = ["tab:gray" if n in few else "tab:green" if v >= threshold else "tab:red" for n, v in zip(names, values)]
    # The scale spans the point estimates and the gate (not the widest interval, which would squash
    # the differences that matter into a sliver); intervals running past the left edge are cut there.
    low = min([threshold] + [v for n, v in zip(names, values) if n not in few] or [threshold])
    left = max(0.0, low - max(0.2 * (1.0 - low), 0.005))
    axes.barh(range(len(names)), [v - left for v in values], left=left, color=colours)
    if intervals:
        for index, (name, value) in enumerate(recalls):
            low_end, high = (list(intervals.get(name) or []) + [None, None])[:2]
            if low_end is None or high is None:
                continue
            axes.errorbar([value], [index], xerr=[[max(0.0, value - max(low_end, left))], [max(0.0, high - value)]],
                          fmt="none", ecolor="black", capsize=3, linewidth=1)
    for index, value in enumerate(values):
        axes.text(min(max(value, left), 1.0), index, f" {value:.3f}", va="center", ha="left" if value < 1.0 else "right",
                  fontsize=7, color="black" if value < 1.0 else "white")
    axes.axvline(threshold, color="black", linestyle="--", label=f"gate {threshold:g}")
    axes.set_yticks(range(len(names)), [f"{n} (too few)" if n in few else n for n in names])
    axes.invert_yaxis()
    axes.set_xlim(left, 1.0)
    axes.set_xlabel("defect recall (test split)" + (", with 95% Clopper-Pearson intervals" if intervals else ""))
    axes.legend(fontsize=8, loc="lower left")
    return save_figure(figure, path)


def plot_precision_recall(points: Mapping[str, Mapping[str, Sequence[float]]],
                          average_precision: Mapping[str, float], path: str, max_curves: int = 12) -> str:
    """Precision against recall per class (one vs the rest) on the test split, average precision in the
    legend; with more than ``max_curves`` classes, the ``max_curves`` lowest-AP ones (the table has all)."""
    names = list(points)
    if len(names) > max_curves:
        names = sorted(names, key=lambda n: average_precision.get(n, 0.0))[:max_curves]
    figure, axes = new_axes(6.5, 4.8)
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for index, name in enumerate(names):
        axes.plot(points[name]["recall"], points[name]["precision"], linewidth=1.4, color=colours(index % colours.N),
                  label=f"{name} (AP {average_precision.get(name, float('nan')):.3f})", drawstyle="steps-post")
    low = min([min(points[n]["precision"]) for n in names] + [0.9])
    axes.set_xlim(0.0, 1.01)
    axes.set_ylim(max(0.0, low - 0.05), 1.01)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title("Precision-recall per class (test split)" + (f", the {len(names)} lowest AP" if len(points) > len(names) else ""))
    axes.legend(fontsize=7, loc="lower left")
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_reliability(calibration: Mapping[str, Mapping[str, Any]], path: str) -> str:
    """Reliability diagram: observed frequency against mean predicted probability per bin (the diagonal is
    perfect calibration), one panel per probability, with the bins' counts below."""
    panels = list(calibration.items())
    titles = {"predicted_class": "predicted class: confidence vs accuracy",
              "patterns": "each pattern: probability vs present", "defect": "defect: 1 - P(normal) vs defective"}
    figure, grid = plt.subplots(2, len(panels), figsize=(4.6 * len(panels), 5.2), squeeze=False,
                                gridspec_kw={"height_ratios": [3, 1]})
    for column, (key, numbers) in enumerate(panels):
        top, bottom = grid[0, column], grid[1, column]
        top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        top.plot(numbers["confidence"], numbers["accuracy"], marker="o", markersize=4, color="tab:blue")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_title(f"{titles.get(key, key)}\nECE {numbers['ece']:.3f} on {numbers['examples']}", fontsize=9)
        top.set_ylabel("observed frequency")
        widths = np.asarray(numbers["bin_high"]) - np.asarray(numbers["bin_low"])
        bottom.bar(numbers["bin_low"], numbers["count"], width=widths, align="edge", color="tab:gray")
        bottom.set_yscale("log")
        bottom.set_ylim(bottom=0.8)
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("predicted probability")
        bottom.set_ylabel("wafers")
    return save_figure(figure, path)


def save_wafer_image(image: np.ndarray, path: str, pixels: int = GALLERY_PIXELS) -> str:
    """A wafer map / image as a PNG, enlarged with nearest-neighbour so each die stays a crisp square."""
    return save_enlarged_png(image, path, pixels)


def _data_uri(path: str) -> str:
    with open(path, "rb") as handle:
        return "data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii")


def _img(path: str, out_dir: str, alt: str, embed: bool) -> str:
    source = _data_uri(path) if embed else os.path.relpath(path, out_dir).replace(os.sep, "/")
    return f'<img src="{html.escape(source)}" alt="{html.escape(alt)}">'


def fmt(value: Optional[float], digits: int = 4) -> str:
    """A metric as the report prints it (4 decimals; n/a for a missing or NaN value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str,
           row_keys: Optional[Sequence[str]] = None, key_name: str = "key",
           row_classes: Optional[Sequence[str]] = None) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)  # headers are HTML (callers escape names)
    body = []
    for index, row in enumerate(rows):
        attribute = f' data-{key_name}="{html.escape(row_keys[index])}"' if row_keys else ""
        if row_classes and row_classes[index]:
            attribute += f' class="{html.escape(row_classes[index])}"'
        body.append(f"<tr{attribute}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def slice_recalls(slices: Mapping[str, Mapping[str, float]]) -> List[Tuple[str, float, int]]:
    """(slice, defect recall, examples) for every slice where defect recall is defined; overall first."""
    found = []
    for name, metrics in slices.items():
        value = metrics.get(DEFECT_RECALL_KEY)
        if value is not None and not math.isnan(value):
            found.append((name, float(value), int(metrics.get(EXAMPLE_COUNT_KEY, 0) or 0)))
    return sorted(found, key=lambda item: (item[0] != "overall", item[0]))


def interval_text(interval: Optional[Sequence[Optional[float]]], digits: int = 4) -> str:
    """A two-sided interval as the report prints it: [low, high] (n/a when unknown)."""
    low, high = (list(interval or []) + [None, None])[:2]
    if low is None or high is None:
        return "n/a"
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def slice_rows(evaluation: Mapping[str, Any], min_defect_recall: float) -> List[Dict[str, Any]]:
    """One row per slice of the per-slice table: every gated slice (overall first, with the rule and
    verdict the summary gives it), then every other slice where defect recall is defined ("not gated")."""
    slices = evaluation.get("slices", {}) or {}
    rows: List[Dict[str, Any]] = []
    seen = set()
    for entry in evaluation.get("gated_slices") or []:
        name = entry["slice"]
        seen.add(name)
        metrics = slices.get(name, {})
        rows.append({**entry, "examples": int(metrics.get(EXAMPLE_COUNT_KEY, 0) or 0), "gated": True})
    for name, value, count in slice_recalls(slices):
        if name in seen:
            continue
        metrics = slices.get(name, {})
        rows.append({
            "slice": name, "examples": count, "defect_recall": value, "gated": False,
            "interval": [metrics.get("defect_score/defect_recall_ci_low"), metrics.get("defect_score/defect_recall_ci_high")],
            "support": metrics.get("defect_score/defect_support"), "misses": metrics.get("defect_score/defect_misses"),
            # Without the summary's gate (older summaries), every slice with a recall was gated on it.
            "rule": "point estimate" if not evaluation.get("gated_slices") else "not gated",
            "verdict": ("pass" if value >= min_defect_recall else "fail") if not evaluation.get("gated_slices") else "",
        })
    return rows


def _count_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(int(round(float(value))))


def _gallery_html(items: Sequence[GalleryItem], total: int, out_dir: str, embed: bool) -> str:
    if not items:
        return "<p>No test wafer was misclassified.</p>"
    cells = []
    for index, item in enumerate(items):
        path = save_wafer_image(item.image, os.path.join(out_dir, IMAGES_DIR, "gallery", f"wafer_{index:03d}.png"))
        tag = f'<span class="tag">{html.escape(item.kind)}</span><br>' if item.kind else ""
        explained = ""
        if item.explanation is not None:
            drawn = save_wafer_image(overlay(item.image, item.explanation),
                                     os.path.join(out_dir, IMAGES_DIR, "gallery", f"wafer_{index:03d}_explained.png"))
            explained = _img(drawn, out_dir, f"which dies drove the call {item.predicted_class}", embed)
        cells.append(
            f'<figure class="wafer" data-true="{html.escape(item.true_class)}" data-predicted="{html.escape(item.predicted_class)}"'
            f' data-explained="{item.explanation is not None}">'
            f"{_img(path, out_dir, f'{item.true_class} predicted as {item.predicted_class}', embed)}{explained}"
            f"<figcaption>{tag}true <b>{html.escape(item.true_class)}</b><br>predicted <b>{html.escape(item.predicted_class)}</b> "
            f"({item.confidence:.2f})<br>defect score {item.defect_score:.2f}<br><small>{html.escape(item.ref)}</small></figcaption></figure>"
        )
    shown = f"{len(items)} of {total}" if total > len(items) else f"all {total}"
    explained = any(item.explanation is not None for item in items)
    return (f"<p>Showing {shown} misclassified test wafers (missed defects first, then false alarms, "
            f"then wrong patterns). The number under the class is the model's probability for it."
            + (" Beside each wafer, the dies that drove the predicted class (SmoothGrad: red = most influence)."
               if explained else "") + "</p>"
            f'<div class="gallery">{"".join(cells)}</div>')


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
    gate = data.gate

    def picture(name: str) -> str:
        return os.path.join(out_dir, IMAGES_DIR, name)

    def image_tag(path: str, alt: str) -> str:
        return _img(path, out_dir, alt, embed_images)

    parts = [f"<h1>{html.escape(data.title)}</h1>", _header_html(data.run)]

    # Verdict: blessing and the gate's metrics.
    recall = evaluation.get("defect_recall")
    false_alarms = evaluation.get("false_alarm_rate")
    settings = {**{"min_defect_recall": gate.min_defect_recall, "max_false_alarm_rate": gate.max_false_alarm_rate,
                   "confidence": 0.95, "interval_confidence": 0.95},
                **{k: v for k, v in (evaluation.get("gate") or {}).items() if v is not None}}
    minimum, max_far = settings["min_defect_recall"], settings["max_false_alarm_rate"]
    confidence = settings["confidence"]
    overall = evaluation.get("overall") or {}
    blessed_text = {True: "BLESSED", False: "NOT BLESSED", None: "unknown"}[data.blessed]
    css = "pass" if data.blessed else "fail"
    parts.append(f'<h2>Blessing</h2><p class="verdict {css}" id="blessing" data-blessed="{data.blessed}">{blessed_text}</p>')
    bound = overall.get("lower_bound", evaluation.get("defect_recall_lower_bound"))
    support, misses = overall.get("support"), overall.get("misses")
    if overall:
        # The overall recall is judged on its lower bound; old summaries without one on the point estimate.
        recall_ok = overall.get("verdict") == "pass"
        recall_rule = f"{confidence:.0%} one-sided lower bound &ge; {minimum:g}"
    else:
        recall_ok = recall is not None and recall >= minimum
        recall_rule = "point estimate"
    support_text = "n/a" if support is None else f"{support} defective ({misses} missed)"
    normal_support = overall.get("normal_support")
    gate_rows = [
        ["defect recall (overall)", fmt(recall), f"&ge; {minimum:g}", _verdict(recall_ok),
         interval_text(overall.get("interval")), support_text, recall_rule],
        [f"defect recall, {confidence:.0%} lower bound (overall)", fmt(bound), f"&ge; {minimum:g}",
         _verdict(bound is not None and bound >= minimum) if bound is not None else "",
         "", support_text, "Clopper-Pearson, exact" if bound is not None else ""],
        ["false-alarm rate (overall)", fmt(false_alarms), f"&le; {max_far:g}",
         _verdict(false_alarms is not None and false_alarms <= max_far),
         interval_text(overall.get("false_alarm_interval")),
         "n/a" if normal_support is None else f"{normal_support} normal ({overall.get('false_alarms')} flagged)",
         "point estimate"],
        ["accuracy", fmt(evaluation.get("accuracy")), "", "", "", "", ""],
        ["macro-F1", fmt(evaluation.get("macro_f1")), "", "", "", "", ""],
    ]
    parts.append(_table(["metric (test split)", "value", "gate", "", f"{settings['interval_confidence']:.0%} interval",
                         "support", "rule"], gate_rows, "gate",
                        ["defect_recall", "defect_recall_lower_bound", "false_alarm_rate", "accuracy", "macro_f1"], "metric"))
    if bound is not None and support is not None:
        needed = overall.get("defects_needed")
        parts.append(
            f'<p id="lower-bound-note" data-lower-bound="{bound}" data-support="{support}">Overall defect recall is judged on '
            f"its exact (Clopper-Pearson) {confidence:.0%} one-sided lower bound, not on the point estimate: "
            f"{fmt(recall)} on {support} defective test wafers ({misses} missed) only shows recall &ge; {fmt(bound)}. "
            + (f"With {misses} missed, the bound reaches {minimum:g} from {needed} defective test wafers." if needed else "")
            + "</p>"
        )
    failures = evaluation.get("validation_failures") or []
    if failures:
        parts.append("<p>The Evaluator's gate failures:</p><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in failures) + "</ul>")

    point = data.operating_point
    target = point.get("target_defect_recall", data.training_summary.get("training", {}).get("target_defect_recall"))
    if point:
        parts.append(
            "<h2>Operating threshold</h2>"
            f'<p id="operating-threshold" data-threshold="{point.get("threshold")}">A wafer is flagged defective when '
            f"P({html.escape(data.normal_class)}) &lt; <b>{fmt(point.get('threshold'))}</b> "
            f"(chosen by the Trainer on the eval split for defect recall {fmt(target)}: "
            f"eval defect recall {fmt(point.get('defect_recall'))}, eval false-alarm rate {fmt(point.get('false_alarm_rate'))}). "
            "The defect recall above applies this threshold; the class metrics below use the most probable class.</p>"
        )
    summary = data.training_summary
    if "familiarity_threshold" in summary:
        parts.append(
            f'<p id="unknown-inputs" data-threshold="{summary["familiarity_threshold"]}">Inputs unlike every class '
            f"(familiarity, the largest cosine similarity to a class, below <b>{fmt(summary['familiarity_threshold'])}</b>) "
            "are answered <code>unknown</code> and flagged defective (sent to review). The threshold was chosen on the eval "
            f"split to reject at most {fmt(summary.get('training', {}).get('max_unknown_rate'), 3)} of its normal wafers: it rejects {fmt(summary.get('eval_unknown_rate_normal'))} of "
            f"them and {fmt(summary.get('eval_unknown_rate'))} of all eval wafers.</p>"
        )

    # Defect recall per slice.
    rows_data = slice_rows(evaluation, minimum)
    if rows_data:
        min_support = settings.get("min_slice_support")
        too_few = [r["slice"] for r in rows_data if str(r.get("rule", "")).startswith("too few")]
        rows, classes_ = [], []
        for r in rows_data:
            verdict = r.get("verdict", "")
            if verdict == "too few to judge":
                cell = '<span class="few">too few to judge</span>'
            elif verdict in ("pass", "fail"):
                cell = _verdict(verdict == "pass")
            else:
                cell = html.escape(str(verdict))
            rows.append([html.escape(r["slice"]), str(r.get("examples", "")), fmt(r.get("defect_recall")),
                         interval_text(r.get("interval")), _count_text(r.get("support")), _count_text(r.get("misses")),
                         html.escape(str(r.get("rule", ""))), cell])
            classes_.append("too-few" if r["slice"] in too_few else "")
        parts.append("<h2>Defect recall per slice</h2>")
        policy = settings.get("too_few", "report")
        if min_support is not None:
            feature_names = sorted({r["slice"].split("=")[0] for r in rows_data
                                    if r.get("gated") and "=" in r["slice"] and not r["slice"].startswith("label=")})
            rule = ("it is not gated, and is listed as such." if policy == "report" else "it refuses the blessing.")
            parts.append(
                f"<p>Overall is judged on its {confidence:.0%} lower bound; each defect class"
                + (f" and each value of {html.escape(', '.join(feature_names))}" if feature_names else "")
                + f" on its point estimate when it has at least {min_support} defective wafers. "
                f"A smaller slice is too few to judge: {rule}</p>"
            )
        parts.append(_table(["slice", "examples", "defect recall", f"{settings['interval_confidence']:.0%} interval",
                             "defective", "missed", "rule", f"&ge; {minimum:g}"], rows,
                            "defect-recall", [r["slice"] for r in rows_data], "slice", classes_))
        if too_few:
            parts.append(f'<p id="too-few" class="few" data-slices="{html.escape(";".join(too_few))}">Too few defective wafers '
                         f"to judge (n &lt; {min_support}): " + ", ".join(html.escape(n) for n in too_few)
                         + (" (not gated: their recall is not evidence either way)." if policy == "report"
                            else " (they refuse the blessing).") + "</p>")
        plotted = [(r["slice"], r["defect_recall"]) for r in rows_data
                   if r.get("defect_recall") is not None and not math.isnan(r["defect_recall"])]
        if plotted:
            parts.append(image_tag(plot_slice_recall(plotted, minimum, picture("defect_recall_slices.png"),
                                                     {r["slice"]: r.get("interval") for r in rows_data}, too_few),
                                   "defect recall per slice"))

    # Confusion matrix and class metrics.
    multilabel = bool(evaluation.get("multilabel"))
    matrix = evaluation.get("confusion_matrix") or [[0] * len(classes) for _ in classes]
    if multilabel:
        parts.append(f'<p id="exact-match">Multi-label model: a wafer may carry several patterns. Exact-match rate '
                     f'(the predicted pattern set is the true one): {fmt(evaluation.get("accuracy"))}. Per-pattern '
                     f'metrics below count each (wafer, pattern) decision at probability 0.5.</p>')
    else:
        parts.append("<h2>Confusion matrix</h2><p>Rows: true class; columns: predicted (most probable) class.</p>")
        parts.append(_table(["true \\ predicted"] + [html.escape(c) for c in classes],
                            [[html.escape(c)] + [str(int(v)) for v in row] for c, row in zip(classes, matrix)],
                            "confusion-matrix", classes, "class"))
        parts.append(image_tag(plot_confusion_matrix(matrix, classes, picture("confusion_matrix.png")), "confusion matrix"))
    per_class = evaluation.get("per_class", {})
    rows = [[html.escape(c), fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]), str(m["support"])] for c, m in per_class.items()]
    parts.append("<h2>Per-class precision, recall, F1</h2>")
    parts.append(_table(["class", "precision", "recall", "F1", "support"], rows, "per-class", list(per_class), "class"))
    if per_class:
        parts.append(image_tag(plot_class_metrics(per_class, picture("class_metrics.png")), "per-class metrics"))

    parts.append(_curves_html(data.curves, picture, image_tag))

    # Training.
    summary = data.training_summary
    parts.append("<h2>Training</h2>")
    if summary:
        training = summary.get("training", {})
        facts = [("network", training.get("model")), ("width", training.get("width")), ("r", training.get("r")),
                 ("parameters", f"{summary.get('parameters', 0):,}"), ("epochs run", summary.get("epochs_run")),
                 ("train / eval examples", f"{summary.get('train_examples')} / {summary.get('eval_examples')}"),
                 ("optimizer / schedule", f"{training.get('optimizer')} / {training.get('schedule')}"),
                 ("probability scale", fmt(summary.get("probability_scale"), 3))]
        parts.append(_table(["setting", "value"], [[k, html.escape(str(v))] for k, v in facts], "training"))
    if data.history:
        parts.append(image_tag(plot_training_curves(data.history, picture("training_curves.png")), "training curves"))
    else:
        parts.append("<p>No training history was logged.</p>")

    # Gallery.
    parts.append("<h2>Misclassified test wafers</h2>")
    parts.append(_gallery_html(data.gallery, data.misclassified_total, out_dir, embed_images))
    if data.gallery_confusion is not None and not multilabel:
        same = np.array_equal(np.asarray(data.gallery_confusion), np.asarray(matrix))
        parts.append(f'<p id="gallery-check" data-consistent="{same}">The gallery\'s predictions (the exported model\'s '
                     f"<code>serving_examples</code> signature on the raw test split) "
                     f"{'agree with' if same else '<b>differ from</b>'} the Evaluator's confusion matrix.</p>")

    # Data.
    data_summary = data.data_summary
    per_split = data_summary.get("examples_per_split_and_class", {})
    if per_split:
        parts.append("<h2>Data: class balance and split sizes</h2>")
        parts.append(f"<p>{html.escape(str(data_summary.get('data_path', '')))} ({html.escape(str(data_summary.get('data_format', '')))}); "
                     "splits are by lot, so wafers of one lot never sit in two splits.</p>")
        splits = list(per_split)
        names = classes + sorted({c for s in splits for c in per_split[s]} - set(classes))
        rows = [[html.escape(n)] + [str(per_split[s].get(n, 0)) for s in splits] + [str(sum(per_split[s].get(n, 0) for s in splits))] for n in names]
        totals = data_summary.get("examples_per_split", {})
        rows.append(["<b>total</b>"] + [str(totals.get(s, sum(per_split[s].values()))) for s in splits]
                    + [str(data_summary.get("examples_total", ""))])
        lots = data_summary.get("lots_per_split", {})
        if lots:
            rows.append(["lots"] + [str(lots.get(s, "")) for s in splits] + [str(sum(lots.values()))])
        parts.append(_table(["class"] + [html.escape(s) for s in splits] + ["all"], rows, "class-balance", names + ["total"] + (["lots"] if lots else []), "class"))
        parts.append(image_tag(plot_class_balance(per_split, classes, picture("class_balance.png")), "class balance"))
        rejected = data_summary.get("rejected_total", {})
        if rejected:
            parts.append("<p>Records not ingested: " + ", ".join(f"{html.escape(k)} {v}" for k, v in rejected.items())
                         + " (listed with reasons in the quarantine artifact's rejected.csv).</p>")

    if data.sources:
        parts.append("<h2>Sources</h2>" + _table(["artifact", "URI"], [[html.escape(k), html.escape(v)] for k, v in data.sources.items()], "sources"))

    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}{IMAGE_CHECK}</body></html>")
    path = os.path.join(out_dir, REPORT_HTML)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path


def _size_text(size: Optional[int]) -> str:
    if size is None:
        return "n/a"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _header_html(run: Mapping[str, Any]) -> str:
    """When, which run, what was pushed where, and from which data."""
    if not run:
        return ""
    pushed = (f"version {html.escape(str(run.get('pushed_version')))} at {html.escape(str(run.get('pushed_path')))}"
              if run.get("pushed") else "nothing was pushed")
    data = (f"{html.escape(str(run.get('data_path') or 'n/a'))}: {run.get('data_examples', 'n/a')} wafers, "
            f"{_size_text(run.get('data_bytes'))}")
    rows = [["run date", html.escape(str(run.get("date", "")))], ["pipeline run", html.escape(str(run.get("run_id", "")))],
            ["pushed model", pushed], ["data", data]]
    return _table(["run", ""], rows, "header", ["date", "run_id", "pushed", "data"], "fact").replace(
        '<table id="header">', '<table id="header" class="header">')


def _curves_html(curves: Mapping[str, Any], picture, image_tag) -> str:
    """Per-class precision-recall curves (average precision in a table) and the reliability diagram."""
    if not curves:
        return ""
    parts = ["<h2>Precision-recall and calibration</h2>"]
    average = curves.get("average_precision") or {}
    if average:
        parts.append("<p>Each class against the rest, ranking the test wafers by the model's probability of the class; "
                     "average precision (AP) is the area under its curve.</p>")
        parts.append(_table(["class", "average precision"], [[html.escape(n), fmt(v)] for n, v in average.items()],
                            "average-precision", list(average), "class"))
        parts.append(image_tag(plot_precision_recall(curves["points"], average, picture("precision_recall.png")),
                               "precision-recall curves"))
    calibration = curves.get("calibration") or {}
    if calibration:
        eces = ", ".join(f"{key.replace('_', ' ')} {numbers['ece']:.3f}" for key, numbers in calibration.items())
        parts.append(f'<p id="calibration" data-ece="{html.escape(eces)}">Reliability: of the wafers given probability '
                     f"p, a share p should be right (points on the diagonal). Expected calibration error: {eces}.</p>")
        parts.append(image_tag(plot_reliability(calibration, picture("reliability.png")), "reliability diagram"))
    return "".join(parts)


def _verdict(ok: bool) -> str:
    return '<span class="pass">pass</span>' if ok else '<span class="fail">fail</span>'


__all__ = [
    "REPORT_HTML", "render_report", "new_axes", "save_figure", "plot_confusion_matrix", "plot_class_metrics",
    "plot_training_curves", "plot_class_balance", "plot_slice_recall", "plot_precision_recall", "plot_reliability",
    "save_wafer_image", "slice_recalls", "fmt",
    "slice_rows", "interval_text",
]
