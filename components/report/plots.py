"""The run report's plots, from plain data (no TFX): each writes a PNG and returns its path.

Experiments reuse ``new_axes`` and ``save_figure``.
"""

import os
from typing import Any, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only: no display on build machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spanet.data.imageio import save_enlarged_png  # noqa: E402

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


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str, title: str = "Confusion matrix (test split)"
) -> str:
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
                    axes.text(
                        j,
                        i,
                        str(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shares[i, j] > 0.6 else "black",
                    )
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


def plot_class_balance(
    per_split_and_class: Mapping[str, Mapping[str, int]], class_names: Sequence[str], path: str
) -> str:
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


def plot_slice_recall(
    recalls: Sequence[Tuple[str, float]],
    threshold: float,
    path: str,
    intervals: Optional[Mapping[str, Sequence[Optional[float]]]] = None,
    too_few: Sequence[str] = (),
) -> str:
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
            axes.errorbar(
                [value],
                [index],
                xerr=[[max(0.0, value - max(low_end, left))], [max(0.0, high - value)]],
                fmt="none",
                ecolor="black",
                capsize=3,
                linewidth=1,
            )
    for index, value in enumerate(values):
        axes.text(
            min(max(value, left), 1.0),
            index,
            f" {value:.3f}",
            va="center",
            ha="left" if value < 1.0 else "right",
            fontsize=7,
            color="black" if value < 1.0 else "white",
        )
    axes.axvline(threshold, color="black", linestyle="--", label=f"gate {threshold:g}")
    axes.set_yticks(range(len(names)), [f"{n} (too few)" if n in few else n for n in names])
    axes.invert_yaxis()
    axes.set_xlim(left, 1.0)
    axes.set_xlabel("defect recall (test split)" + (", with 95% Clopper-Pearson intervals" if intervals else ""))
    axes.legend(fontsize=8, loc="lower left")
    return save_figure(figure, path)


def plot_precision_recall(
    points: Mapping[str, Mapping[str, Sequence[float]]],
    average_precision: Mapping[str, float],
    path: str,
    max_curves: int = 12,
) -> str:
    """Precision against recall per class (one vs the rest) on the test split, average precision in the
    legend; with more than ``max_curves`` classes, the ``max_curves`` lowest-AP ones (the table has all)."""
    names = list(points)
    if len(names) > max_curves:
        names = sorted(names, key=lambda n: average_precision.get(n, 0.0))[:max_curves]
    figure, axes = new_axes(6.5, 4.8)
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for index, name in enumerate(names):
        axes.plot(
            points[name]["recall"],
            points[name]["precision"],
            linewidth=1.4,
            color=colours(index % colours.N),
            label=f"{name} (AP {average_precision.get(name, float('nan')):.3f})",
            drawstyle="steps-post",
        )
    low = min([min(points[n]["precision"]) for n in names] + [0.9])
    axes.set_xlim(0.0, 1.01)
    axes.set_ylim(max(0.0, low - 0.05), 1.01)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(
        "Precision-recall per class (test split)"
        + (f", the {len(names)} lowest AP" if len(points) > len(names) else "")
    )
    axes.legend(fontsize=7, loc="lower left")
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_reliability(calibration: Mapping[str, Mapping[str, Any]], path: str) -> str:
    """Reliability diagram: observed frequency against mean predicted probability per bin (the diagonal is
    perfect calibration), one panel per probability, with the bins' counts below."""
    panels = list(calibration.items())
    titles = {
        "predicted_class": "predicted class: confidence vs accuracy",
        "patterns": "each pattern: probability vs present",
        "defect": "defect: 1 - P(normal) vs defective",
    }
    figure, grid = plt.subplots(
        2, len(panels), figsize=(4.6 * len(panels), 5.2), squeeze=False, gridspec_kw={"height_ratios": [3, 1]}
    )
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


__all__ = [
    "new_axes",
    "save_figure",
    "plot_confusion_matrix",
    "plot_class_metrics",
    "plot_training_curves",
    "plot_class_balance",
    "plot_slice_recall",
    "plot_precision_recall",
    "plot_reliability",
    "save_wafer_image",
]
