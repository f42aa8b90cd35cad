"""What a finished local run produced, read back from ML Metadata: artifacts, blessing, timings."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.report.artifacts import REPORT_HTML, EvaluationReport
from components.trainer import TRAINING_SUMMARY_JSON


def connect(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _latest(
    store: metadata_store.MetadataStore, type_name: str, producer: str = ""
) -> Optional[metadata_store_pb2.Artifact]:
    """The newest live artifact of a type (written by the named component, if given)."""
    artifacts = [
        a for a in store.get_artifacts_by_type(type_name)
        if a.state == metadata_store_pb2.Artifact.LIVE and (not producer or f"/{producer}/" in a.uri)
    ]
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def _custom(artifact: Optional[metadata_store_pb2.Artifact], name: str) -> Any:
    if artifact is None or name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return value.int_value if value.HasField("int_value") else value.string_value


@dataclass
class RunResults:
    """The latest artifacts of a pipeline's outputs."""

    model_uri: Optional[str] = None
    evaluation_uri: Optional[str] = None
    blessed: Optional[bool] = None
    pushed: Optional[bool] = None
    pushed_path: Optional[str] = None
    quarantine_uri: Optional[str] = None
    anomalies_uri: Optional[str] = None
    trainer_run_dir: Optional[str] = None
    #: The EvaluationReporter's folder (report.html, images/, report.json).
    report_uri: Optional[str] = None
    training_summary: Dict[str, Any] = field(default_factory=dict)
    component_seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def report_path(self) -> Optional[str]:
        """The run report's HTML page, or None when the run wrote none."""
        return os.path.join(self.report_uri, REPORT_HTML) if self.report_uri else None


def component_durations(store: metadata_store.MetadataStore, since_ms: int = 0) -> Dict[str, float]:
    """Seconds each component's latest execution took since ``since_ms`` (cached ones take ~0 s)."""
    node_type = next((t.id for t in store.get_context_types() if t.name == "node"), None)
    durations: Dict[str, float] = {}
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        if execution.create_time_since_epoch < since_ms:
            continue
        node = next((c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type), "")
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0
        durations[node.split(".")[-1] or str(execution.id)] = seconds
    return durations


def read_results(metadata_path: str, since_ms: int = 0) -> RunResults:
    """The latest model, evaluation, blessing and push recorded in the metadata store."""
    store = connect(metadata_path)
    model = _latest(store, "Model")
    evaluation = _latest(store, "ModelEvaluation")
    blessing = _latest(store, "ModelBlessing")
    pushed = _latest(store, "PushedModel")
    run = _latest(store, "ModelRun")
    results = RunResults(
        model_uri=model.uri if model else None,
        evaluation_uri=evaluation.uri if evaluation else None,
        blessed=None if blessing is None else bool(_custom(blessing, "blessed")),
        pushed=None if pushed is None else bool(_custom(pushed, "pushed")),
        pushed_path=_custom(pushed, "pushed_destination") or None,
        quarantine_uri=getattr(_latest(store, "spanet.WaferQuarantineReport"), "uri", None),
        anomalies_uri=getattr(_latest(store, "ExampleAnomalies", "ExampleValidator"), "uri", None),
        trainer_run_dir=run.uri if run else None,
        report_uri=getattr(_latest(store, EvaluationReport.TYPE_NAME), "uri", None),
        component_seconds=component_durations(store, since_ms),
    )
    if run is not None:
        summary_path = os.path.join(run.uri, TRAINING_SUMMARY_JSON)
        if os.path.exists(summary_path):
            with open(summary_path, encoding="utf-8") as handle:
                results.training_summary = json.load(handle)
    return results

