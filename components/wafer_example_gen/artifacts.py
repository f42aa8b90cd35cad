"""The quarantine report artifact: rejected records (file and reason) and counts per split and class.

A custom artifact whose TYPE_NAME is a valid KFP schema title, so the component compiles for
Kubeflow V2 (it is carried there as a generic ``system.Artifact``).
"""

from tfx import types

#: Files inside a WaferQuarantineReport artifact.
REJECTED_CSV = "rejected.csv"
SUMMARY_JSON = "summary.json"
REJECTED_CSV_COLUMNS = ("ref", "reason", "label")


class WaferQuarantineReport(types.Artifact):
    """Folder with ``rejected.csv`` (ref,reason,label of each unreadable record) and ``summary.json``."""

    TYPE_NAME = "spanet.WaferQuarantineReport"
