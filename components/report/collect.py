"""Gathers a run's report data from its artifacts' folders into a :class:`ReportData`.

The numbers come from :func:`components.eval_summary.summarize_evaluation` unchanged, so the
report shows exactly the Evaluator's. The gallery runs the exported model's ``serving_examples``
signature (loaded with ``tf.saved_model.load``, not as Keras) on the raw test examples.
"""

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components import features
from components.config import DEFECT_SCORE, PATTERN_THRESHOLD, PROBABILITIES
from components.eval_summary import display_order, reorder_matrix, summarize_evaluation
from components.evaluation import EVAL_SIGNATURE
from components.report.curves import split_curves
from components.report.data import GalleryItem, GatePolicy, ReportData
from components.report.verdicts import decide
from components.trainer import HISTORY_CSV, TRAINING_SUMMARY_JSON
from components.wafer_example_gen.artifacts import SUMMARY_JSON as QUARANTINE_SUMMARY_JSON
from spanet.data.classes import MIXED_LABEL_SEPARATOR, label_parts
from spanet.data.imageio import decode_image
from spanet.explain import to_shape
from spanet.serving.contract import EXPLAIN_SIGNATURE, EXPLANATION

#: Misclassified wafers kept while scanning, before the gallery's ordering picks the shown ones.
_KEEP_MAX = 2000


def read_json(path: str) -> Dict[str, Any]:
    """A JSON file as a dict ({} when it does not exist)."""
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path, "r") as handle:
        return json.load(handle)


def read_history(run_dir: str) -> Dict[str, List[float]]:
    """The Trainer's history.csv (Keras CSVLogger) as numeric columns; {} when absent."""
    path = os.path.join(run_dir, HISTORY_CSV)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path, "r") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    columns: Dict[str, List[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
    return columns


def _examples(split_dir: str, batch_size: int):
    files = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    if not files:
        raise FileNotFoundError(f"no examples under {split_dir}")
    return tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size)


def _feature(example: tf.train.Example, key: str) -> bytes:
    values = example.features.feature[key].bytes_list.value
    return values[0] if values else b""


def _kind(true_id: int, flagged: bool, normal_id: int) -> str:
    if true_id != normal_id and not flagged:
        return "missed defect"
    if true_id == normal_id and flagged:
        return "false alarm"
    return ""


def _pattern_set(probabilities: np.ndarray, patterns: Sequence[str], normal_class: str) -> Tuple[str, float]:
    """Multi-label: the patterns present (probability >= 0.5) joined with ``+`` (else the normal class),
    and the confidence of that set (the smallest decided probability)."""
    present = [name for name, p in zip(patterns, probabilities) if p >= PATTERN_THRESHOLD]
    confidence = float(np.min(np.maximum(probabilities, 1.0 - probabilities))) if len(probabilities) else 1.0
    return (MIXED_LABEL_SEPARATOR.join(present) or normal_class), confidence


def _ranked_item(
    example: tf.train.Example, label: str, predicted: str, confidence: float, score: float, kind: str
) -> Tuple[Tuple[int, float], GalleryItem]:
    """A gallery item and its rank: missed defects first, then false alarms, then wrong patterns, surest first."""
    lot = _feature(example, features.LOT_ID_KEY).decode("utf-8")
    wafer = _feature(example, features.WAFER_ID_KEY).decode("utf-8")
    encoded = _feature(example, features.IMAGE_KEY)
    item = GalleryItem(
        image=decode_image(encoded),
        true_class=label,
        predicted_class=predicted,
        confidence=confidence,
        defect_score=score,
        ref=f"lot {lot} wafer {wafer}" if lot else "",
        kind=kind,
        encoded=encoded,
    )
    return ({"missed defect": 0, "false alarm": 1, "": 2}[kind], -confidence), item


@dataclass
class SplitScores:
    """The exported model on one split: the gallery, the error count, the arg-max confusion matrix
    (single-label; rows = true class), and per wafer the probabilities and the true classes (0 / 1 per
    class or pattern), for the precision-recall curves and the reliability diagram."""

    gallery: List[GalleryItem]
    misclassified: int
    matrix: List[List[int]]
    probabilities: np.ndarray
    truth: np.ndarray


def score_split(
    model_dir: str,
    split_dir: str,
    class_names: Sequence[str],
    normal_class: str,
    gallery_size: int = 24,
    batch_size: int = 64,
    multilabel: bool = False,
) -> SplitScores:
    """Runs the exported model's ``serving_examples`` signature on a split's raw examples.

    The gallery holds up to ``gallery_size`` misclassified wafers, missed defects first, then false
    alarms, then wrong patterns, each by descending confidence, with their explanation maps when the
    model exports them. With ``multilabel``, ``class_names`` are the patterns, a wafer is wrong when
    its pattern set is, and there is no matrix.
    """
    model = tf.saved_model.load(model_dir)
    classify = model.signatures[EVAL_SIGNATURE]
    index = {name: i for i, name in enumerate(class_names)}
    normal_id = index.get(normal_class, -1)
    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    wrong: List[Tuple[Tuple[int, float], GalleryItem]] = []
    all_probabilities, all_truth = [], []
    total_wrong = 0
    for batch in _examples(split_dir, batch_size):
        outputs = classify(examples=batch)
        probabilities = outputs[PROBABILITIES].numpy()
        scores = outputs[DEFECT_SCORE].numpy().reshape(-1)
        for serialized, probs, score in zip(batch.numpy(), probabilities, scores):
            example = tf.train.Example.FromString(serialized)
            label = _feature(example, features.LABEL_KEY).decode("utf-8")
            truth = np.zeros(len(class_names), np.int8)
            flagged = bool(score > 0.5)
            if multilabel:
                parts = label_parts(label)
                truth[[index[p] for p in parts if p in index]] = 1
                predicted, confidence = _pattern_set(probs, class_names, normal_class)
                kind = _kind(0 if label != normal_class else 1, flagged, 1)
                right = set(label_parts(predicted)) == set(parts)
            else:
                if label not in index:
                    continue  # a class the model was not trained on: TFMA cannot score it either
                true_id, guess = index[label], int(probs.argmax())
                truth[true_id] = 1
                matrix[true_id, guess] += 1
                predicted, confidence = class_names[guess], float(probs[guess])
                kind = _kind(true_id, flagged, normal_id)
                right = guess == true_id
            all_probabilities.append(probs)
            all_truth.append(truth)
            if right and not kind:
                continue
            total_wrong += 1
            if len(wrong) < _KEEP_MAX:
                wrong.append(_ranked_item(example, label, predicted, confidence, float(score), kind))
    wrong.sort(key=lambda pair: pair[0])
    gallery = [item for _, item in wrong[:gallery_size]]
    explain_items(model, gallery)
    width = len(class_names)
    return SplitScores(
        gallery,
        total_wrong,
        [] if multilabel else matrix.tolist(),
        np.asarray(all_probabilities, np.float32).reshape(-1, width),
        np.asarray(all_truth, np.int8).reshape(-1, width),
    )


def explain_items(model, items: Sequence[GalleryItem], batch_size: int = 16) -> None:
    """Fills each item's explanation map (on its own grid) from the model's ``explain`` signature, if it has one."""
    explain = model.signatures.get(EXPLAIN_SIGNATURE) if hasattr(model.signatures, "get") else None
    if explain is None:
        return
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        maps = explain(images=tf.constant([item.encoded for item in chunk]))[EXPLANATION].numpy()
        for item, cam in zip(chunk, maps):
            item.explanation = to_shape(cam, item.image.shape[:2])


def collect_report_data(
    model_dir: str,
    model_run_dir: str,
    evaluation_uri: str,
    examples_uri: str,
    quarantine_uri: str,
    blessed: Optional[bool],
    gate: GatePolicy,
    test_split: str = "test",
    gallery_size: int = 24,
    class_names: Optional[Sequence[str]] = None,
    normal_class: Optional[str] = None,
    order: Optional[Sequence[str]] = None,
) -> ReportData:
    """Everything the report shows, read from the run's artifact folders.

    Class names and the normal class come from the Trainer's training_summary.json (the model's
    own class order) unless given; the report lists the classes in ``order`` (the configured one).
    """
    summary = read_json(os.path.join(model_run_dir, TRAINING_SUMMARY_JSON))
    class_names = list(class_names or summary.get("class_names") or [])
    if not class_names:
        raise ValueError(f"no class names: {model_run_dir}/{TRAINING_SUMMARY_JSON} is missing or has none")
    normal_class = normal_class or summary.get("normal_class") or "none"
    evaluation = summarize_evaluation(evaluation_uri, class_names, order)
    scores = score_split(
        model_dir,
        os.path.join(examples_uri, f"Split-{test_split}"),
        class_names,
        normal_class,
        gallery_size,
        multilabel=bool(summary.get("multilabel")),
    )
    matrix = scores.matrix
    if matrix:
        matrix = reorder_matrix(matrix, display_order(class_names, order))
    data = ReportData(
        class_names=list(evaluation["class_names"]),
        normal_class=normal_class,
        evaluation=evaluation,
        gate=gate,
        blessed=blessed,
        operating_point=summary.get("operating_point", {}),
        history=read_history(model_run_dir),
        training_summary=summary,
        data_summary=read_json(os.path.join(quarantine_uri, QUARANTINE_SUMMARY_JSON)),
        gallery=scores.gallery,
        misclassified_total=scores.misclassified,
        gallery_confusion=matrix,
        curves=split_curves(
            scores.probabilities,
            scores.truth,
            class_names,
            normal_class,
            bool(summary.get("multilabel")),
            display_order(class_names, order),
        ),
        sources={
            "model": model_dir,
            "training run": model_run_dir,
            "evaluation": evaluation_uri,
            "examples": examples_uri,
            "quarantine": quarantine_uri,
        },
    )
    data.verdicts = decide(data)
    return data


def folder_bytes(path: str) -> Optional[int]:
    """Bytes of the files under a local path (a file's own size); None for object stores or a missing path."""
    if not path or "://" in path or not os.path.exists(path):
        return None
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def run_facts(run_id: str, pushed_model, data_summary: Dict[str, Any]) -> Dict[str, Any]:
    """The report header: when, which run, what was pushed where, from which data (path, wafers, bytes)."""
    import datetime

    def custom(key: str):
        return pushed_model.get_custom_property(key) if pushed_model.has_custom_property(key) else None

    pushed = bool(custom("pushed"))
    data_path = str(data_summary.get("data_path") or "")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "run_id": run_id,
        "pushed": pushed,
        "pushed_version": str(custom("pushed_version")) if pushed and custom("pushed_version") is not None else None,
        "pushed_path": str(custom("pushed_destination")) if pushed and custom("pushed_destination") else None,
        "data_path": data_path,
        "data_examples": data_summary.get("examples_total"),
        "data_bytes": folder_bytes(data_path),
    }


def report_numbers(data: ReportData) -> Dict[str, Any]:
    """The report's numbers as JSON-ready data (written beside the HTML as report.json)."""
    return {
        "class_names": data.class_names,
        "normal_class": data.normal_class,
        "blessed": data.blessed,
        "gate": {
            "min_defect_recall": data.gate.min_defect_recall,
            "max_false_alarm_rate": data.gate.max_false_alarm_rate,
        },
        "operating_point": data.operating_point,
        "evaluation": data.evaluation,
        "misclassified_total": data.misclassified_total,
        "gallery_confusion": data.gallery_confusion,
        "data_summary": data.data_summary,
        "curves": {key: value for key, value in data.curves.items() if key != "points"},
        "run": data.run,
    }
