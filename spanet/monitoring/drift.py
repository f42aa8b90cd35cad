"""Drift of served traffic from training data: TFDV statistics of the per-wafer features, compared.

The baseline is a ``DatasetFeatureStatisticsList`` of the same features computed on training data
(``spanet drift baseline``); traffic statistics come from the request log (``spanet drift``). A
schema gives each feature TFDV's drift comparator (Jensen-Shannon divergence for numeric features,
L-infinity distance for categorical ones) with the thresholds of :class:`DriftConfig`, and
``tfdv.validate_statistics(traffic, schema, previous_statistics=baseline)`` reports the features
over their threshold. TFDV is imported lazily (see the package docstring).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from spanet.monitoring.features import (
    CATEGORICAL_FEATURES,
    GEOMETRY_FEATURES,
    INT_FEATURES,
    NUMERIC_FEATURES,
    columns,
)

#: Files ``spanet drift --out`` writes.
ANOMALIES_FILE = "anomalies.pbtxt"
SUMMARY_FILE = "drift.json"
STATISTICS_FILE = "traffic_stats.pb"
#: Comparator names as reported (TFDV's own ``DriftSkewInfo.Measurement`` type names, lower case).
JSD = "jensen_shannon_divergence"
L_INFINITY = "infinity_norm"


@dataclass(frozen=True)
class DriftConfig:
    """The drift thresholds, per comparator and feature group, with per-feature overrides.

    Defaults, measured on synthetic maps (200 traffic wafers vs 500 baseline wafers, lots of 5):
    - ``numeric_jsd`` 0.1: Jensen-Shannon divergence (0 = same, 1 = disjoint) of the fail fraction's
      histogram (TFDV's documented example value); fresh maps measured 0.014-0.035, maps with
      twice the failing dies 0.21-0.26.
    - ``geometry_jsd`` 0.3: the same for the grid features (die count, rows, columns, aspect ratio).
      Wafers of one lot share a grid, so these histograms move in lot-sized steps: fresh maps
      measured up to 0.19 (aspect ratio), another grid-size range 1.0.
    - ``categorical_linf`` 0.15: L-infinity distance of the category shares (predicted class,
      unknown): the largest change of one category's share, 15 points; fresh maps measured <= 0.1.
    Fewer traffic wafers than ``min_wafers`` are refused: histograms of a handful of maps differ by chance.
    """

    numeric_jsd: float = 0.1
    geometry_jsd: float = 0.3
    categorical_linf: float = 0.15
    #: Feature name -> its own threshold (e.g. ``{"predicted_class": 0.25}``).
    overrides: Mapping[str, float] = field(default_factory=dict)
    min_wafers: int = 30

    def __post_init__(self):
        fixed = [("numeric_jsd", self.numeric_jsd), ("geometry_jsd", self.geometry_jsd)]
        for name, value in fixed + [("categorical_linf", self.categorical_linf)] + list(self.overrides.items()):
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"drift threshold {name} must be in (0, 1]; got {value!r}")
        if int(self.min_wafers) < 1:
            raise ValueError(f"DriftConfig.min_wafers must be >= 1; got {self.min_wafers!r}")

    def threshold(self, feature: str) -> float:
        """The threshold of one feature."""
        if feature in self.overrides:
            return float(self.overrides[feature])
        if feature in CATEGORICAL_FEATURES:
            return self.categorical_linf
        return self.geometry_jsd if feature in GEOMETRY_FEATURES else self.numeric_jsd


@dataclass(frozen=True)
class Measurement:
    """One comparator's value for one feature against its threshold."""

    feature: str
    comparator: str
    value: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold

    def line(self) -> str:
        """The one-line report: feature, comparator, measured value vs threshold."""
        verdict = "DRIFT" if self.drifted else "ok"
        relation = ">" if self.drifted else "<="
        return f"{verdict} {self.feature}: {self.comparator} {self.value:.4f} {relation} threshold {self.threshold:g}"


@dataclass
class DriftReport:
    """The outcome of one comparison: every measurement, and TFDV's other anomalies (one line each)."""

    traffic_wafers: int
    baseline_wafers: int
    measurements: List[Measurement]
    other_anomalies: List[str]
    anomalies: Any = None  # the tensorflow_metadata Anomalies proto

    @property
    def drifted(self) -> List[Measurement]:
        return [m for m in self.measurements if m.drifted]

    @property
    def has_drift(self) -> bool:
        return bool(self.drifted or self.other_anomalies)

    def summary(self) -> Dict[str, Any]:
        """A JSON-able summary (what ``drift.json`` holds)."""
        return {
            "drift": self.has_drift,
            "traffic_wafers": self.traffic_wafers,
            "baseline_wafers": self.baseline_wafers,
            "anomalies": [asdict(m) for m in self.drifted],
            "other_anomalies": list(self.other_anomalies),
            "measurements": [asdict(m) | {"drifted": m.drifted} for m in self.measurements],
        }


def feature_statistics(rows: Sequence[Mapping[str, Any]]):
    """TFDV statistics (a DatasetFeatureStatisticsList) of feature rows; missing values stay missing."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    data = columns(rows)
    frame = pd.DataFrame(
        {
            name: pd.Series(
                values,
                dtype="Int64" if name in INT_FEATURES else "float64" if name in NUMERIC_FEATURES else "object",
            )
            for name, values in data.items()
        }
    )
    return tfdv.generate_statistics_from_dataframe(frame)


def wafer_count(statistics) -> int:
    """Examples counted by a statistics list (its first dataset)."""
    return int(statistics.datasets[0].num_examples) if statistics.datasets else 0


def drift_schema(config: DriftConfig):
    """A schema of the features with their drift comparators only (no domains: a new class is drift, not an error)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    for name in NUMERIC_FEATURES + CATEGORICAL_FEATURES:
        feature = schema.feature.add(name=name)
        if name in CATEGORICAL_FEATURES:
            feature.type = schema_pb2.BYTES
            feature.drift_comparator.infinity_norm.threshold = config.threshold(name)
        else:
            feature.type = schema_pb2.INT if name in INT_FEATURES else schema_pb2.FLOAT
            feature.drift_comparator.jensen_shannon_divergence.threshold = config.threshold(name)
    return schema


def _comparator_name(kind: int) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    name = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(kind)
    return {"JENSEN_SHANNON_DIVERGENCE": JSD, "L_INFTY": L_INFINITY}.get(name, name.lower())


def compare(traffic, baseline, config: Optional[DriftConfig] = None) -> DriftReport:
    """Validate traffic statistics against the baseline's with TFDV's drift comparators."""
    import tensorflow_data_validation as tfdv

    config = config or DriftConfig()
    anomalies = tfdv.validate_statistics(traffic, drift_schema(config), previous_statistics=baseline)
    measurements = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for m in info.drift_measurements:
            measurements.append(Measurement(feature, _comparator_name(m.type), float(m.value), float(m.threshold)))
    drifted = {m.feature for m in measurements if m.drifted}
    other = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        if feature in drifted:
            continue
        text = info.short_description or info.description or "anomaly"
        other.append(f"ANOMALY {feature}: {' '.join(text.split())}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        other.append(f"ANOMALY dataset: {' '.join((info.short_description or info.description).split())}")
    return DriftReport(
        traffic_wafers=wafer_count(traffic),
        baseline_wafers=wafer_count(baseline),
        measurements=sorted(measurements, key=lambda m: (not m.drifted, m.feature)),
        other_anomalies=other,
        anomalies=anomalies,
    )


def write_statistics(statistics, path: str) -> str:
    """Write a DatasetFeatureStatisticsList: binary proto, or text for a ``.pbtxt`` / ``.txt`` name."""
    from google.protobuf import text_format

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    if path.endswith((".pbtxt", ".txt")):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text_format.MessageToString(statistics))
    else:
        with open(tmp, "wb") as fh:
            fh.write(statistics.SerializeToString())
    os.replace(tmp, path)
    return path


def load_statistics(path: str):
    """Read a DatasetFeatureStatisticsList written by :func:`write_statistics` (binary or text).

    Raises ValueError naming the file if it is not one, or holds none of the drift features.
    """
    from google.protobuf import message, text_format
    from tensorflow_metadata.proto.v0 import statistics_pb2

    with open(path, "rb") as fh:
        data = fh.read()
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        if path.endswith((".pbtxt", ".txt")):
            text_format.Parse(data.decode("utf-8"), statistics)
        else:
            statistics.ParseFromString(data)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a DatasetFeatureStatisticsList ({exc})") from None
    names = {".".join(f.path.step) or f.name for d in statistics.datasets for f in d.features}
    if not statistics.datasets or not names & set(NUMERIC_FEATURES + CATEGORICAL_FEATURES):
        raise ValueError(f"{path} holds no statistics of the drift features (write one with spanet drift baseline)")
    return statistics


def write_report(report: DriftReport, out: str) -> List[str]:
    """Write the anomalies proto (text) and the JSON summary to folder ``out``; returns the paths."""
    from google.protobuf import text_format

    os.makedirs(out, exist_ok=True)
    anomalies_path = os.path.join(out, ANOMALIES_FILE)
    with open(anomalies_path, "w", encoding="utf-8") as fh:
        fh.write(text_format.MessageToString(report.anomalies))
    summary_path = os.path.join(out, SUMMARY_FILE)
    with open(summary_path, "w", encoding="utf-8") as fh:
        json.dump(report.summary(), fh, indent=2)
        fh.write("\n")
    return [anomalies_path, summary_path]
