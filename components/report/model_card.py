"""The model card of a run: intended use, data, metrics with their intervals, the gate's decision, limitations.

Model Card Toolkit does not install with the pinned TFX 1.16 stack, so the card carries its
content as Markdown (a Jinja2 template over :class:`ReportData`) and the same as HTML (Python-Markdown).
The EvaluationReporter writes both into its artifact; ``run_local.py`` copies them beside each
pushed version (``<version>/assets.extra/``, which TF Serving does not read).
"""

from __future__ import annotations

import html
import os
from typing import Any, Dict, List, Optional

import markdown

from components.report.data import ReportData
from components.report.templating import template

MODEL_CARD_MD = "model_card.md"
MODEL_CARD_HTML = "model_card.html"

_TEMPLATE = template("model_card.md.j2", html=False)


def _number(value: Optional[float], digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(values: Optional[List[Optional[float]]]) -> str:
    low, high = (list(values or []) + [None, None])[:2]
    return "n/a" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def card_fields(data: ReportData, name: str = "spanet") -> Dict[str, Any]:
    """The values the card shows, from the report's data (the Evaluator's numbers unchanged)."""
    evaluation, summary, quarantine = data.evaluation, data.training_summary, data.data_summary
    overall = evaluation.get("overall") or {}
    gate = evaluation.get("gate") or {}
    training = summary.get("training", {})
    image = summary.get("image", {})
    multilabel = bool(evaluation.get("multilabel") or summary.get("multilabel"))
    decision = {
        True: "**Blessed** by the gate: pushed to serving.",
        False: "**Refused** by the gate: not pushed.",
        None: "The gate's decision is not recorded.",
    }[data.blessed]
    per_split = quarantine.get("examples_per_split", {})
    return {
        "name": name,
        "decision": decision,
        "network": training.get("model", "n/a"),
        "parameters": f"{summary.get('parameters', 0):,}",
        "input": f"{image.get('height', '?')} x {image.get('width', '?')} x {image.get('channels', '?')}"
        if image
        else "n/a",
        "output": (
            "one probability per pattern (multi-label), the set present and the defect flag"
            if multilabel
            else "one probability per class, the most probable class and the defect flag"
        ),
        "epochs": summary.get("epochs_run", "n/a"),
        "train": summary.get("train_examples", "n/a"),
        "eval": summary.get("eval_examples", "n/a"),
        "threshold": _number((data.operating_point or {}).get("threshold"), 3),
        "classes": ", ".join(f"`{c}`" for c in data.class_names),
        "normal": data.normal_class,
        "source": f"{quarantine.get('data_path', 'n/a')} ({quarantine.get('data_format', 'n/a')})",
        "total": quarantine.get("examples_total", "n/a"),
        "rejected": sum((quarantine.get("rejected_total") or {}).values()) if quarantine.get("rejected_total") else 0,
        "splits": list(per_split.items()),
        "lots": quarantine.get("lots_per_split", {}),
        "level": f"{overall.get('interval_confidence', 0.95):.0%}",
        "confidence": f"{overall.get('confidence', 0.95):.0%}",
        "recall": _number(evaluation.get("defect_recall")),
        "recall_interval": _interval(overall.get("interval")),
        "defects": overall.get("support", "n/a"),
        "misses": overall.get("misses", "n/a"),
        "lower_bound": _number(evaluation.get("defect_recall_lower_bound")),
        "far": _number(evaluation.get("false_alarm_rate")),
        "far_interval": _interval(overall.get("false_alarm_interval")),
        "normals": overall.get("normal_support", "n/a"),
        "accuracy_name": "exact-match rate" if multilabel else "accuracy",
        "accuracy": _number(evaluation.get("accuracy")),
        "macro_f1": _number(evaluation.get("macro_f1")),
        "class_word": "pattern" if multilabel else "class",
        "per_class": list((evaluation.get("per_class") or {}).items()),
        "min_recall": gate.get("min_defect_recall", data.gate.min_defect_recall),
        "min_support": gate.get("min_slice_support", "n/a"),
        "max_far": gate.get("max_false_alarm_rate", data.gate.max_false_alarm_rate),
        "failures": list(evaluation.get("validation_failures") or []),
        "too_few": list(evaluation.get("too_few_to_judge") or []),
        "synthetic": "synthetic" in str(quarantine.get("data_path", "")),
    }


def model_card_markdown(data: ReportData, name: str = "spanet") -> str:
    """The card as Markdown."""
    return _TEMPLATE.render(**card_fields(data, name)).strip() + "\n"


def model_card_html(card_markdown: str, name: str = "spanet") -> str:
    """The same card as a standalone HTML page."""
    body = markdown.markdown(card_markdown, extensions=["tables"])
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Model card: {html.escape(name)}</title>'
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 8px}</style></head>\n<body>\n" + body + "\n</body></html>\n"
    )


def write_model_card(data: ReportData, folder: str, name: str = "spanet") -> str:
    """Writes model_card.md and model_card.html into ``folder``; returns the Markdown file's path."""
    card = model_card_markdown(data, name)
    os.makedirs(folder, exist_ok=True)
    for file_name, text in ((MODEL_CARD_MD, card), (MODEL_CARD_HTML, model_card_html(card, name))):
        with open(os.path.join(folder, file_name), "w", encoding="utf-8") as handle:
            handle.write(text)
    return os.path.join(folder, MODEL_CARD_MD)


def copy_beside_model(report_dir: str, version_dir: str) -> Optional[str]:
    """Copies the card of a report folder into a pushed version's ``assets.extra/`` (each file written
    whole, then renamed); returns the Markdown copy's path, or None when the report has no card."""
    import shutil
    import tempfile

    if not os.path.isfile(os.path.join(report_dir, MODEL_CARD_MD)):
        return None
    target = os.path.join(version_dir, "assets.extra")
    os.makedirs(target, exist_ok=True)
    for file_name in (MODEL_CARD_MD, MODEL_CARD_HTML):
        handle, staging = tempfile.mkstemp(prefix=f".{file_name}.", dir=target)
        os.close(handle)
        shutil.copyfile(os.path.join(report_dir, file_name), staging)
        os.replace(staging, os.path.join(target, file_name))
    return os.path.join(target, MODEL_CARD_MD)
