"""What a finished local run produced, read back from ML Metadata: artifacts, blessing, timings."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.report.artifacts import REPORT_HTML, EvaluationReport
from components.trainer import TRAINING_SUMMARY_JSON
from components.wafer_example_gen.artifacts import SUMMARY_JSON


def connect(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def run_context(store: metadata_store.MetadataStore, since_ms: int = 0) -> Optional[metadata_store_pb2.Context]:
    """The newest pipeline run (TFX's ``pipeline_run`` context) created at or after ``since_ms``."""
    runs = [c for c in store.get_contexts_by_type("pipeline_run") if c.create_time_since_epoch >= since_ms]
    return max(runs, key=lambda c: (c.create_time_since_epoch, c.id)) if runs else None


def run_outputs(
    store: metadata_store.MetadataStore, run: metadata_store_pb2.Context
) -> List[metadata_store_pb2.Artifact]:
    """The live artifacts that this run's executions output, cached ones included, newest first.

    Read from the run's own executions and their OUTPUT events, never "the newest artifact of a
    type": another run on the same store, or an earlier run with other settings, must not be
    reported as this run's model.
    """
    executions = store.get_executions_by_context(run.id)
    events = store.get_events_by_execution_ids([e.id for e in executions]) if executions else []
    ids = sorted(
        {
            e.artifact_id
            for e in events
            if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        }
    )
    artifacts = store.get_artifacts_by_id(ids) if ids else []
    return sorted((a for a in artifacts if a.state == metadata_store_pb2.Artifact.LIVE), key=lambda a: -a.id)


def _of_type(
    store: metadata_store.MetadataStore,
    artifacts: List[metadata_store_pb2.Artifact],
    type_name: str,
    producer: str = "",
) -> Optional[metadata_store_pb2.Artifact]:
    """This run's artifact of a type (written by the named component, if given), or None."""
    types = store.get_artifact_types_by_id(sorted({a.type_id for a in artifacts})) if artifacts else []
    names = {t.id: t.name for t in types}
    return next(
        (a for a in artifacts if names.get(a.type_id) == type_name and (not producer or f"/{producer}/" in a.uri)), None
    )


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
    #: WaferExampleGen's summary: examples per split and class, rejected and left-out records.
    quarantine_summary: Dict[str, Any] = field(default_factory=dict)
    component_seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def report_path(self) -> Optional[str]:
        """The run report's HTML page, or None when the run wrote none."""
        return os.path.join(self.report_uri, REPORT_HTML) if self.report_uri else None


def component_durations(store: metadata_store.MetadataStore, run: metadata_store_pb2.Context) -> Dict[str, float]:
    """Seconds each of the run's components took (cached ones take ~0 s)."""
    node_type = next((t.id for t in store.get_context_types() if t.name == "node"), None)
    durations: Dict[str, float] = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = next((c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type), "")
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0
        durations[node.split(".")[-1] or str(execution.id)] = seconds
    return durations


def read_results(metadata_path: str, since_ms: int = 0) -> RunResults:
    """The model, evaluation, blessing and push of the newest pipeline run started at or after ``since_ms``.

    Empty results when no run started since then (a run that failed before TFX recorded it).
    """
    store = connect(metadata_path)
    pipeline_run = run_context(store, since_ms)
    if pipeline_run is None:
        return RunResults()
    outputs = run_outputs(store, pipeline_run)

    def _find(type_name: str, producer: str = "") -> Optional[metadata_store_pb2.Artifact]:
        return _of_type(store, outputs, type_name, producer)

    model = _find("Model")
    evaluation = _find("ModelEvaluation")
    blessing = _find("ModelBlessing")
    pushed = _find("PushedModel")
    run = _find("ModelRun")
    results = RunResults(
        model_uri=model.uri if model else None,
        evaluation_uri=evaluation.uri if evaluation else None,
        blessed=None if blessing is None else bool(_custom(blessing, "blessed")),
        pushed=None if pushed is None else bool(_custom(pushed, "pushed")),
        pushed_path=_custom(pushed, "pushed_destination") or None,
        quarantine_uri=getattr(_find("spanet.WaferQuarantineReport"), "uri", None),
        anomalies_uri=getattr(_find("ExampleAnomalies", "ExampleValidator"), "uri", None),
        trainer_run_dir=run.uri if run else None,
        report_uri=getattr(_find(EvaluationReport.TYPE_NAME), "uri", None),
        component_seconds=component_durations(store, pipeline_run),
    )
    if run is not None:
        results.training_summary = _read_json(os.path.join(run.uri, TRAINING_SUMMARY_JSON))
    if results.quarantine_uri:
        results.quarantine_summary = _read_json(os.path.join(results.quarantine_uri, SUMMARY_JSON))
    return results


def _read_json(path: str) -> Dict[str, Any]:
    """A JSON file's object, or {} when the file is absent."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
