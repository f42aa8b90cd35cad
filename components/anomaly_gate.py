"""A gate after ExampleValidator: data that violates the curated schema stops the run before training.

TFX's ExampleValidator records anomalies but lets the pipeline go on; a model trained
on data with unknown labels or missing images is not one to ship. This component
reads the anomalies of every split and fails with a message that names each anomaly
and where its report lies.
"""

# No `from __future__ import annotations` here: TFX reads this module's type hints as objects.

import os
from typing import List, Sequence

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

import schemas
from components.features import LABEL_KEY

ANOMALIES_FILE = "SchemaDiff.pb"


class SchemaAnomalyError(RuntimeError):
    """The ingested data violates the schema; the message lists the anomalies and their report."""


def read_anomalies(artifact_uri: str, split: str) -> anomalies_pb2.Anomalies:
    """The Anomalies proto ExampleValidator wrote for one split."""
    path = os.path.join(artifact_uri, f"Split-{split}", ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(path, "rb") as handle:
        anomalies.ParseFromString(handle.read())
    return anomalies


def describe_anomalies(artifact_uri: str, splits: List[str], class_names: Sequence[str] = ()) -> List[str]:
    """One line per anomaly: split, feature, what is wrong (for the label: the configured classes), and
    the report file."""
    lines = []
    for split in splits:
        anomalies = read_anomalies(artifact_uri, split)
        report = os.path.join(artifact_uri, f"Split-{split}", ANOMALIES_FILE)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(r.description or r.short_description for r in info.reason) or info.description
            if feature == LABEL_KEY and class_names:
                reasons += f" (the configured classes are {list(class_names)}: give --classes to change them)"
            lines.append(
                f"split {split!r}, feature {feature!r}: {info.short_description}: {reasons} (report: {report})"
            )
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"split {split!r}, data set: {info.short_description}: {info.description} (report: {report})")
    return lines


def read_schema(artifact_uri: str) -> schema_pb2.Schema:
    """The schema in a Schema artifact's folder (its one file)."""
    return io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(artifact_uri))


@component
def SchemaAnomalyGate(
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies], schema: InputArtifact[standard_artifacts.Schema]
) -> None:
    """Fails the run when ExampleValidator found anomalies in any split."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    problems = describe_anomalies(anomalies.uri, splits, schemas.label_domain(read_schema(schema.uri)))
    if problems:
        raise SchemaAnomalyError(
            f"the data violates the schema ({len(problems)} anomal{'y' if len(problems) == 1 else 'ies'}); "
            "training stopped before it began:\n  " + "\n  ".join(problems)
        )
