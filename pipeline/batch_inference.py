"""Batch scoring on Beam: files -> wafers -> the pushed model (Beam ``RunInference``) -> one row per wafer.

The graph: the input files are read in parallel (the readers ``spanet predict`` uses: images, MixedWM38
``.npz``, SEMI G85, WM-811K pickles; a file that cannot be read goes to the rejected output with its
reason, the rest go on); wafers are batched and scored by :class:`SavedModelHandler`, which loads the
SavedModel once per worker (``spanet.serving.local.LocalModel``, the same reading of the outputs as the
gRPC client); rows are written as CSV or JSON lines by Beam's file sink (written beside the target and
renamed when complete, so a failed run leaves no half-written file), with the rejected inputs and a
summary (wafers per class, flagged, unknown) beside them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from spanet.serving.client import Prediction
from spanet.serving.local import LocalModel
from spanet.serving.predict import InputFileError, csv_cells, csv_header, csv_line, jsonl_line, read_inputs

#: ``--output`` suffixes and the row format each one means.
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
REJECTED_TAG = "rejected"
#: Files written beside the predictions: ``<stem>.rejected.txt`` and ``<stem>.summary.json``.
REJECTED_SUFFIX = ".rejected.txt"
SUMMARY_SUFFIX = ".summary.json"


@dataclass(frozen=True)
class BatchJob:
    """One batch-scoring job: what to read, which model, where the rows go."""

    files: Tuple[str, ...]
    model_dir: str
    output: str
    class_names: Tuple[str, ...]
    batch_size: int = 64

    @property
    def row_format(self) -> str:
        return OUTPUT_FORMATS[os.path.splitext(self.output)[1].lower()]

    def beside(self, suffix: str) -> str:
        """A file next to the output: its name without the extension, plus ``suffix``."""
        return os.path.splitext(self.output)[0] + suffix


class _Progress:
    """Counts scored wafers across the workers of this process and prints a line every ``step``."""

    def __init__(self, step: int, stream=None):
        self.step, self.stream = max(1, step), stream or sys.stdout
        self._lock, self._count, self._next = threading.Lock(), 0, max(1, step)

    def add(self, count: int) -> None:
        with self._lock:
            self._count += count
            if self._count >= self._next:
                print(f"  scored {self._count} wafers", file=self.stream, flush=True)
                while self._next <= self._count:
                    self._next += self.step


_PROGRESS: Optional[_Progress] = None


class SavedModelHandler(ModelHandler[bytes, Any, LocalModel]):
    """Beam's model handler for the exported SavedModel: encoded images in, :class:`Prediction` out.

    A batch TensorFlow cannot decode is scored image by image, so one bad image becomes one
    rejected row (its inference is then the error text) instead of failing the job.
    """

    def __init__(self, model_dir: str, batch_size: int = 64):
        self._model_dir, self._batch_size = model_dir, batch_size

    def load_model(self) -> LocalModel:
        return LocalModel(self._model_dir)

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def run_inference(
        self, batch: Sequence[bytes], model: LocalModel, inference_args: Optional[Dict[str, Any]] = None
    ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        try:
            answers: List[Any] = model.predict(list(batch))
        except tf.errors.InvalidArgumentError:
            answers = []
            for image in batch:
                try:
                    answers.extend(model.predict([image]))
                except tf.errors.InvalidArgumentError as exc:
                    answers.append(f"the model cannot decode it ({(exc.message or str(exc)).splitlines()[0][:200]})")
        if _PROGRESS is not None:
            _PROGRESS.add(len(batch))
        return [PredictionResult(image, answer) for image, answer in zip(batch, answers)]


def _read_file(path: str) -> Iterator[Any]:
    try:
        for item in read_inputs(path):
            yield item.ref, item.image
    except InputFileError as exc:
        yield beam.pvalue.TaggedOutput(REJECTED_TAG, str(exc))


def _split_answers(keyed: Tuple[str, PredictionResult]) -> Iterator[Any]:
    ref, result = keyed
    if isinstance(result.inference, Prediction):
        yield ref, result.inference
    else:
        yield beam.pvalue.TaggedOutput(REJECTED_TAG, f"{ref}: {result.inference}")


class _CountClasses(beam.CombineFn):
    """Wafers, wafers per class, flagged defective and unknown, over all predictions."""

    def create_accumulator(self) -> Dict[str, Any]:
        return {"wafers": 0, "defective": 0, "unknown": 0, "per_class": {}}

    def add_input(self, acc: Dict[str, Any], row: Tuple[str, Prediction]) -> Dict[str, Any]:
        prediction = row[1]
        acc["wafers"] += 1
        acc["defective"] += int(prediction.defective)
        acc["unknown"] += int(prediction.unknown)
        acc["per_class"][prediction.class_name] = acc["per_class"].get(prediction.class_name, 0) + 1
        return acc

    def merge_accumulators(self, accumulators: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
        merged = self.create_accumulator()
        for acc in accumulators:
            for key in ("wafers", "defective", "unknown"):
                merged[key] += acc[key]
            for name, count in acc["per_class"].items():
                merged["per_class"][name] = merged["per_class"].get(name, 0) + count
        return merged

    def extract_output(self, acc: Dict[str, Any]) -> str:
        return json.dumps({**acc, "per_class": dict(sorted(acc["per_class"].items()))}, indent=2)


def build_graph(root: beam.Pipeline, job: BatchJob) -> None:
    """Adds the scoring graph for ``job`` to ``root``: predictions, rejected inputs and the summary."""
    read = (
        root
        | "Files" >> beam.Create(list(job.files))
        | "Reshuffle" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(_read_file).with_outputs(REJECTED_TAG, main="wafers")
    )
    answers = (
        read.wafers
        | "Score" >> RunInference(KeyedModelHandler(SavedModelHandler(job.model_dir, job.batch_size)))
        | "Split" >> beam.FlatMap(_split_answers).with_outputs(REJECTED_TAG, main="scored")
    )
    classes = list(job.class_names)
    if job.row_format == "csv":
        lines = answers.scored | "Rows" >> beam.Map(lambda row: csv_line(csv_cells(row[0], row[1], classes)))
        header = csv_line(csv_header(classes))
    else:
        lines = answers.scored | "Rows" >> beam.MapTuple(jsonl_line)
        header = None
    lines | "Write" >> beam.io.WriteToText(job.output, shard_name_template="", header=header)
    (
        (read[REJECTED_TAG], answers[REJECTED_TAG])
        | "Rejected" >> beam.Flatten()
        | "WriteRejected" >> beam.io.WriteToText(job.beside(REJECTED_SUFFIX), shard_name_template="")
    )
    (
        answers.scored
        | "Count" >> beam.CombineGlobally(_CountClasses())
        | "WriteSummary" >> beam.io.WriteToText(job.beside(SUMMARY_SUFFIX), shard_name_template="")
    )


def run_job(job: BatchJob, beam_args: Sequence[str] = (), progress_every: int = 1000) -> Dict[str, Any]:
    """Runs ``job`` (DirectRunner unless ``beam_args`` say otherwise); returns the summary plus the
    rejected inputs' reasons (``rejected``)."""
    global _PROGRESS
    from apache_beam.options.pipeline_options import PipelineOptions

    _PROGRESS = _Progress(progress_every)
    try:
        with beam.Pipeline(options=PipelineOptions(list(beam_args))) as root:
            build_graph(root, job)
    finally:
        _PROGRESS = None
    with open(job.beside(SUMMARY_SUFFIX), encoding="utf-8") as handle:
        text = handle.read().strip()
    summary = json.loads(text) if text else _CountClasses().create_accumulator()
    with open(job.beside(REJECTED_SUFFIX), encoding="utf-8") as handle:
        summary["rejected"] = [line for line in handle.read().splitlines() if line]
    return summary


__all__ = ["BatchJob", "SavedModelHandler", "build_graph", "run_job", "OUTPUT_FORMATS"]
