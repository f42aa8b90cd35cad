"""WaferExampleGen's executor: plan the reading, run the Beam ingestion, write the quarantine summary.

All or nothing: if the ingestion fails or nothing was readable, the outputs are emptied and the
run fails with a message that says why (the artifacts are then not published).
"""

import csv
import dataclasses
import io
import json
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

import schemas
from components import features
from components.wafer_example_gen import ingest
from components.wafer_example_gen.artifacts import REJECTED_CSV, SUMMARY_JSON
from spanet.data.formats.base import shuffle_plan
from spanet.data.readers import make_reader
from spanet.data.records import DataInputError, RejectKind
from spanet.data.splits import normalise_ratios


def _empty(uri: str) -> None:
    """Remove everything inside `uri` (leave the folder the orchestrator made)."""
    if fileio.exists(uri):
        for name in fileio.listdir(uri):
            path = os.path.join(uri, name)
            fileio.rmtree(path) if fileio.isdir(path) else fileio.remove(path)


def _first_reasons(report_uri: str, n: int = 3) -> List[str]:
    """The first `n` 'ref: reason' lines of the rejected CSV, for error messages."""
    path = os.path.join(report_uri, REJECTED_CSV)
    if not fileio.exists(path):
        return []
    with fileio.open(path, "r") as fh:
        rows = list(csv.reader(io.StringIO(fh.read())))[1 : n + 1]
    return [f"{row[0]}: {row[1]}" for row in rows]


def summarise(counts: Dict[str, Any], exec_properties: Dict[str, Any], data_format: str) -> Dict[str, Any]:
    """The quarantine summary: examples per split and class, lots per split, rejected per kind and class."""
    examples = counts.get("examples", {})
    rejected = counts.get("rejected", {})
    splits = list(json.loads(exec_properties["split_ratios"]))
    return {
        "data_path": exec_properties["data_path"],
        "data_format": data_format,
        "seed": exec_properties["seed"],
        "split_ratios": json.loads(exec_properties["split_ratios"]),
        "examples_total": sum(sum(v.values()) for v in examples.values()),
        "examples_per_split": {s: sum(examples.get(s, {}).values()) for s in splits},
        "examples_per_split_and_class": {s: dict(sorted(examples.get(s, {}).items())) for s in splits},
        "lots_per_split": {s: counts.get("lots", {}).get(s, 0) for s in splits},
        "empty_splits": [s for s in splits if not examples.get(s)],
        "rejected_total": {k: sum(rejected.get(k, {}).values()) for k in RejectKind.ALL},
        "rejected_per_kind_and_class": {k: dict(sorted(rejected.get(k, {}).items())) for k in RejectKind.ALL},
    }


def check_splits(summary: Dict[str, Any]) -> None:
    """DataInputError naming the first empty split, its lot count and what to change.

    Splits are by lot, so a small data set in big lots can leave a split with no wafer: training or
    evaluating on nothing would only fail much later, or report nothing.
    """
    for split in summary["empty_splits"]:
        lots = summary["lots_per_split"]
        raise DataInputError(
            f"{summary['data_path']}: split {split!r} is empty ({lots.get(split, 0)} lots of "
            f"{sum(lots.values())}; examples per split {summary['examples_per_split']}): splits are by lot, so "
            f"give more lots (more wafers or smaller lots) or change the split ratios {summary['split_ratios']}"
        )


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads the input with the configured reader and writes lot-disjoint splits of tf.Examples."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        data_path = exec_properties["data_path"]
        ratios = json.loads(exec_properties["split_ratios"])
        normalise_ratios(ratios)
        seed = int(exec_properties.get("seed") or 0)
        options = json.loads(exec_properties.get("reader_options") or "{}")
        reader = make_reader(exec_properties["data_format"], data_path, options)
        bounds = features.int_bounds(schemas.load_schema())
        if "max_side" in {f.name for f in dataclasses.fields(reader)} and reader.max_side is None:
            # Images the schema would refuse are quarantined from their header, never decoded.
            reader = dataclasses.replace(
                reader, max_side=max(bounds[features.HEIGHT_KEY][1], bounds[features.WIDTH_KEY][1])
            )
        plan = shuffle_plan(reader.plan(data_path), seed)  # DataInputError before anything is written
        logging.info("WaferExampleGen: %s reader, %d shard(s) from %s", reader.name, len(plan.shards), data_path)

        examples = artifact_utils.get_single_instance(output_dict["examples"])
        report = artifact_utils.get_single_instance(output_dict["quarantine"])
        examples.split_names = artifact_utils.encode_split_names(list(ratios))
        split_uris = {s: artifact_utils.get_split_uri([examples], s) for s in ratios}
        try:
            with self._make_beam_pipeline() as pipeline:
                ingest.build_ingest(pipeline, reader, plan, ratios, seed, split_uris, report.uri, bounds)
            counts_path = os.path.join(report.uri, ingest.COUNTS_FILE)
            with fileio.open(counts_path, "r") as fh:
                summary = summarise(json.load(fh), exec_properties, reader.name)
            fileio.remove(counts_path)
            if summary["examples_total"] == 0:
                raise DataInputError(
                    f"{data_path}: no readable record ({reader.name} reader); rejected: {summary['rejected_total']}; "
                    f"first reasons: {_first_reasons(report.uri)}"
                )
            check_splits(summary)
        except BaseException:
            _empty(examples.uri)
            _empty(report.uri)
            raise
        with fileio.open(os.path.join(report.uri, SUMMARY_JSON), "w") as fh:
            fh.write(json.dumps(summary, indent=2, sort_keys=False))

        examples.span = 0
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        examples.set_string_custom_property("source_format", reader.name)
        report.set_int_custom_property("examples_total", summary["examples_total"])
        report.set_int_custom_property("rejected_invalid", summary["rejected_total"][RejectKind.INVALID])
        logging.info("WaferExampleGen: %s", json.dumps(summary))
