"""The experiments' figures (matplotlib, Agg), drawn with the run report's helpers."""

from typing import Dict, List, Optional, Sequence

import numpy as np

from components.report.plots import new_axes, save_figure
from experiments.harness import RunResult

METRICS = (
    ("accuracy", "accuracy"),
    ("precision", "macro precision"),
    ("recall", "macro recall"),
    ("f1", "macro F1"),
    ("defect_recall", "defect recall"),
)


def _value(result: RunResult, metric: str) -> float:
    value = getattr(result, metric)
    return float("nan") if value is None else float(value)


def plot_r_sweep(
    results: Sequence[RunResult],
    path: str,
    published_parameters: Optional[Sequence[int]] = None,
    title: str = "Composition ratio r",
) -> str:
    """Scores against r (left) and parameters against r (right)."""
    r = [result.spec.option("r") for result in results]
    figure, (left, right) = new_axes(11.0, 4.2, ncols=2)
    for metric, label in METRICS:
        left.plot(r, [_value(x, metric) for x in results], marker="o", label=label)
    left.set_xscale("log")
    left.set_xticks(r, [f"{v:g}" for v in r])
    left.set_xlabel("composition ratio r")
    left.set_ylabel("test split")
    left.set_title(title)
    left.legend(fontsize=8)
    right.plot(r, [x.parameters / 1e6 for x in results], marker="o", label="trained (fixed block depth multiplier)")
    if published_parameters:
        right.plot(
            r, [p / 1e6 for p in published_parameters], marker="s", label="published code's rule (ceil(1/r) - 1)"
        )
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xticks(r, [f"{v:g}" for v in r])
    right.set_xlabel("composition ratio r")
    right.set_ylabel("parameters (M)")
    right.set_title("Network size")
    right.legend(fontsize=8)
    return save_figure(figure, path)


def plot_ablation(results: Sequence[RunResult], path: str, title: str = "Ablation") -> str:
    """Accuracy and macro-F1 per configuration as horizontal bars, the baseline on top."""
    labels = [x.spec.label for x in results]
    y = np.arange(len(results))
    figure, axes = new_axes(8.0, max(3.0, 1.2 + 0.45 * len(results)))
    axes.barh(y - 0.2, [_value(x, "accuracy") for x in results], height=0.4, label="accuracy")
    axes.barh(y + 0.2, [_value(x, "f1") for x in results], height=0.4, label="macro F1")
    axes.set_yticks(y, labels)
    axes.invert_yaxis()
    values = [v for x in results for v in (_value(x, "accuracy"), _value(x, "f1")) if not np.isnan(v)]
    axes.set_xlim(max(0.0, min(values or [0.0]) - 0.1), 1.0)
    axes.set_xlabel("test split")
    axes.set_title(title)
    axes.legend(fontsize=8, loc="lower right")
    return save_figure(figure, path)


def plot_accuracy_vs_parameters(
    results: Sequence[RunResult], path: str, title: str = "Accuracy against parameters"
) -> str:
    """One line per network through its widths: accuracy against parameters (log scale)."""
    families: Dict[str, List[RunResult]] = {}
    for result in results:
        families.setdefault(result.spec.group or result.spec.model, []).append(result)
    figure, axes = new_axes(7.5, 4.8)
    for name, members in families.items():
        members = sorted(members, key=lambda x: x.parameters)
        axes.plot([x.parameters / 1e6 for x in members], [x.accuracy for x in members], marker="o", label=name)
        for x in members:
            axes.annotate(
                f"w{x.spec.width:g}",
                (x.parameters / 1e6, x.accuracy),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    axes.set_xscale("log")
    axes.set_xlabel("parameters (M)")
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.legend(fontsize=8)
    return save_figure(figure, path)
