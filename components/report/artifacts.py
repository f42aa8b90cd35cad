"""The run report artifact: ``report.html`` (self-contained), its PNGs and ``report.json``.

TYPE_NAME is a valid KFP schema title, so the pipeline compiles for Kubeflow V2 (where the
artifact is carried as a generic ``system.Artifact``).
"""

from tfx import types

from components.report.data import REPORT_HTML, REPORT_JSON  # noqa: F401  (the artifact's files)


class EvaluationReport(types.Artifact):
    """Folder with ``report.html`` (plots embedded), ``images/*.png`` and ``report.json`` (its numbers)."""

    TYPE_NAME = "spanet.EvaluationReport"
