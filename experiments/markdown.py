"""The experiments' Markdown: a results table and the page around it (command, machine, data, plot)."""

import math
import os
from typing import Optional, Sequence


def cell(value) -> str:
    """A table cell: 4-decimal floats, thousands-separated integers, n/a for None / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


#: Said under every table: one run per row cannot separate small differences from noise.
NOISE_NOTE = (
    "One training run per row and one seed, and runs are not bit-for-bit reproducible between processes: "
    "in quick mode the same configuration "
    "can land a few points apart between runs (compare r_sweep's r=0.5 row with the ablation's baseline, "
    "the same network and recipe), so only differences well beyond that mean anything."
)


def write_page(
    path: str,
    title: str,
    command: str,
    machine: str,
    data: str,
    settings: str,
    table: str,
    plot_path: str,
    notes: Sequence[str] = (),
    seconds: Optional[float] = None,
) -> str:
    """Writes the experiment's Markdown page; the plot is linked relative to the page."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    plot = os.path.relpath(plot_path, os.path.dirname(os.path.abspath(path))).replace(os.sep, "/")
    parts = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine}" + (f"; wall time {seconds / 60:.1f} min" if seconds is not None else ""),
        "",
        f"Data: {data}",
        "",
        f"Training: {settings}",
        "",
        table,
        "",
        f"![{title}]({plot})",
        "",
    ]
    parts += ["Notes:", ""] + [f"- {note}" for note in list(notes) + [NOISE_NOTE]] + [""]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(parts))
    return path
