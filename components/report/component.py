"""EvaluationReporter: after the Evaluator, writes the run's HTML report as an artifact with lineage.

Inputs are the Trainer's model and run folder, the Evaluator's evaluation and blessing, ExampleGen's
examples and quarantine summary, and the Pusher's pushed model (so the header names the version
pushed, or says none was); the output is an :class:`EvaluationReport`.
"""

# No `from __future__ import annotations` here: TFX reads this module's type hints as objects.

import json
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components.report.artifacts import REPORT_JSON, EvaluationReport
from components.report.collect import collect_report_data, report_numbers, run_facts
from components.report.data import GatePolicy
from components.report.model_card import write_model_card
from components.eval_summary import strict_json
from components.report.render import render_report
from components.wafer_example_gen.artifacts import WaferQuarantineReport


@component
def EvaluationReporter(
    model: InputArtifact[standard_artifacts.Model],
    model_run: InputArtifact[standard_artifacts.ModelRun],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    blessing: InputArtifact[standard_artifacts.ModelBlessing],
    examples: InputArtifact[standard_artifacts.Examples],
    quarantine: InputArtifact[WaferQuarantineReport],
    pushed_model: InputArtifact[standard_artifacts.PushedModel],
    report: OutputArtifact[EvaluationReport],
    min_defect_recall: Parameter[float] = 0.99,
    max_false_alarm_rate: Parameter[float] = 0.10,
    test_split: Parameter[str] = "test",
    gallery_size: Parameter[int] = 24,
    class_order: Parameter[str] = "[]",
    run_id: Parameter[str] = "",
) -> None:
    """Writes report.html (confusion matrix, class metrics, gate, threshold, curves, gallery, data), its
    numbers as strict JSON, and the model card (model_card.md / .html)."""
    blessed = bool(blessing.get_int_custom_property("blessed")) if blessing.has_custom_property("blessed") else None
    data = collect_report_data(
        model_dir=path_utils.serving_model_path(model.uri),
        model_run_dir=model_run.uri,
        evaluation_uri=evaluation.uri,
        examples_uri=examples.uri,
        quarantine_uri=quarantine.uri,
        blessed=blessed,
        gate=GatePolicy(min_defect_recall=min_defect_recall, max_false_alarm_rate=max_false_alarm_rate),
        test_split=test_split,
        gallery_size=gallery_size,
        order=json.loads(class_order) or None,
    )
    data.run = run_facts(
        run_id or f"execution {os.path.basename(report.uri.rstrip('/'))}", pushed_model, data.data_summary
    )
    path = render_report(data, report.uri)
    with open(os.path.join(report.uri, REPORT_JSON), "w", encoding="utf-8") as handle:
        json.dump(strict_json(report_numbers(data)), handle, indent=2, default=float, allow_nan=False)
    write_model_card(data, report.uri)
    report.set_string_custom_property("report_html", path)
    if blessed is not None:
        report.set_int_custom_property("blessed", int(blessed))
    if data.evaluation.get("defect_recall") is not None:
        report.set_float_custom_property("defect_recall", float(data.evaluation["defect_recall"]))
