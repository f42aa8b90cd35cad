"""The Beam part of WaferExampleGen: read shards in parallel, split by lot, encode tf.Examples, count.

Kept apart from the executor so that it can be run (and benchmarked) on any Beam pipeline.
"""

import collections
import csv
import io
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

import apache_beam as beam

from components.features import out_of_bounds, record_to_example
from components.wafer_example_gen.artifacts import REJECTED_CSV, REJECTED_CSV_COLUMNS
from spanet.data.formats.base import Reader, ReadPlan, Shard
from spanet.data.records import RejectedRecord, RejectKind, WaferRecord
from spanet.data.splits import assign_split

#: Where the pipeline leaves its counts for the executor (removed once the summary is written).
COUNTS_FILE = "_counts.json"
EXAMPLE_FILE_PREFIX = "data_tfrecord"
_REJECTED, _COUNTS = "rejected", "counts"


def _empty_counts() -> Dict[str, Any]:
    return {"examples": collections.Counter(), "lots": set(), "rejected": collections.Counter()}


def _merge_counts(parts: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    """Merge partial counts (associative, so Beam may combine in any order)."""
    total = _empty_counts()
    for part in parts:
        total["examples"].update(part["examples"])
        total["lots"].update(part["lots"])
        total["rejected"].update(part["rejected"])
    return total


def _count_rejected(record: RejectedRecord) -> Dict[str, Any]:
    counts = _empty_counts()
    counts["rejected"][(record.kind, record.label)] += 1
    return counts


class _ReadEncodeSplit(beam.DoFn):
    """Read one shard; yield serialized examples tagged by split, invalid records, and the shard's counts.

    Counting inside the shard keeps per-record bookkeeping out of Beam's shuffles (millions of
    unlabelled WM-811K rows cost a counter increment, not an element).
    """

    def __init__(
        self, reader: Reader, split_ratios: Mapping[str, float], seed: int, bounds: Mapping[str, Tuple[int, int]]
    ):
        self._reader = reader
        self._ratios = dict(split_ratios)
        self._seed = seed
        self._bounds = dict(bounds)

    def process(self, shard: Shard):
        counts = _empty_counts()
        for result in self._reader.read_shard(shard):
            if isinstance(result, WaferRecord):
                split = assign_split(result.split_key, self._ratios, self._seed)
                reason = out_of_bounds(result, self._bounds)  # outside the schema: never encoded
                if not reason:
                    try:
                        example = record_to_example(result).SerializeToString()
                    except (ValueError, TypeError) as exc:  # e.g. an image PNG cannot hold
                        reason = f"cannot encode: {exc}"
                if reason:
                    result = RejectedRecord(result.ref, reason, label=result.label)
                else:
                    counts["examples"][(split, result.label)] += 1
                    counts["lots"].add((split, result.split_key))
                    yield beam.pvalue.TaggedOutput(split, example)
                    continue
            counts["rejected"][(result.kind, result.label)] += 1
            if result.kind == RejectKind.INVALID:
                yield beam.pvalue.TaggedOutput(_REJECTED, result)
        yield beam.pvalue.TaggedOutput(_COUNTS, counts)


def _write_file(content: str, path: str) -> None:
    from tfx.dsl.io import fileio

    with fileio.open(path, "w") as fh:
        fh.write(content)


def _rejected_csv(rows: List[Tuple[str, str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REJECTED_CSV_COLUMNS)
    writer.writerows(sorted(rows))
    return buf.getvalue()


def _counts_json(counts: Dict[str, Any]) -> str:
    out: Dict[str, Dict[str, Any]] = {"examples": {}, "lots": {}, "rejected": {}}
    for (split, label), n in counts["examples"].items():
        out["examples"].setdefault(split, {})[label] = n
    for split, _ in counts["lots"]:
        out["lots"][split] = out["lots"].get(split, 0) + 1
    for (kind, label), n in counts["rejected"].items():
        out["rejected"].setdefault(kind, {})[label] = n
    return json.dumps(out, sort_keys=True)


def build_ingest(
    pipeline: beam.Pipeline,
    reader: Reader,
    plan: ReadPlan,
    split_ratios: Mapping[str, float],
    seed: int,
    split_uris: Mapping[str, str],
    report_uri: str,
    bounds: Mapping[str, Tuple[int, int]] = (),
) -> None:
    """Add the ingestion to `pipeline`: examples to ``split_uris[split]/data_tfrecord-*.gz``,
    ``rejected.csv`` and the counts file to `report_uri`. Records outside the schema's per-record
    ``bounds`` (:func:`components.features.int_bounds`) are quarantined with their reason.

    There is no global Beam shuffle before writing (it copies every example between processes and
    cost a quarter of the multi-process throughput): pass a plan shuffled by `shuffle_plan`, so
    that each shard, and so each output file, holds a random mix of classes.
    """
    splits: Sequence[str] = list(split_ratios)
    results = (
        pipeline
        | "Shards" >> beam.Create(list(plan.shards))
        | "ReadEncodeSplit"
        >> beam.ParDo(_ReadEncodeSplit(reader, split_ratios, seed, dict(bounds))).with_outputs(
            _REJECTED, _COUNTS, *splits
        )
    )
    for split in splits:
        (
            results[split]
            | f"Write[{split}]"
            >> beam.io.WriteToTFRecord(os.path.join(split_uris[split], EXAMPLE_FILE_PREFIX), file_name_suffix=".gz")
        )
    planned = pipeline | "PlanRejected" >> beam.Create(list(plan.rejected))
    (
        (results[_REJECTED], planned | "PlanInvalid" >> beam.Filter(lambda r: r.kind == RejectKind.INVALID))
        | "AllInvalid" >> beam.Flatten()
        | "InvalidRow" >> beam.Map(lambda r: (r.ref, r.reason, r.label))
        | "InvalidList" >> beam.combiners.ToList()
        | "WriteRejected"
        >> beam.Map(lambda rows: _write_file(_rejected_csv(rows), os.path.join(report_uri, REJECTED_CSV)))
    )
    (
        (results[_COUNTS], planned | "CountPlanRejected" >> beam.Map(_count_rejected))
        | "AllCounts" >> beam.Flatten()
        | "MergeCounts" >> beam.CombineGlobally(_merge_counts)
        | "WriteCounts"
        >> beam.Map(lambda counts: _write_file(_counts_json(counts), os.path.join(report_uri, COUNTS_FILE)))
    )
