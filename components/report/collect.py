"""Gathers a run's report data from its artifacts' folders into a :class:`ReportData`.

The numbers come from :func:`components.eval_summary.summarize_evaluation` unchanged, so the
report shows exactly the Evaluator's. The gallery runs the exported model's ``serving_examples``
signature (loaded with ``tf.saved_model.load``, not as Keras) on the raw test examples.
"""

import csv
import io
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components import features
from components.config import DEFECT_SCORE, PATTERN_THRESHOLD, PROBABILITIES
from components.eval_summary import display_order, reorder_matrix, summarize_evaluation
from components.evaluation import EVAL_SIGNATURE
from components.report.data import GalleryItem, GatePolicy, ReportData
from components.trainer import HISTORY_CSV, TRAINING_SUMMARY_JSON
from components.wafer_example_gen.artifacts import SUMMARY_JSON as QUARANTINE_SUMMARY_JSON
from spanet.data.classes import MIXED_LABEL_SEPARATOR, label_parts
from spanet.data.imageio import decode_image

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


def _ranked_item(example: tf.train.Example, label: str, predicted: str, confidence: float, score: float,
                 kind: str) -> Tuple[Tuple[int, float], GalleryItem]:
    """A gallery item and its rank: missed defects first, then false alarms, then wrong patterns, surest first."""
    lot = _feature(example, features.LOT_ID_KEY).decode("utf-8")
    wafer = _feature(example, features.WAFER_ID_KEY).decode("utf-8")
    item = GalleryItem(image=decode_image(_feature(example, features.IMAGE_KEY)), true_class=label,
                       predicted_class=predicted, confidence=confidence, defect_score=score,
                       ref=f"lot {lot} wafer {wafer}" if lot else "", kind=kind)
    return ({"missed defect": 0, "false alarm": 1, "": 2}[kind], -confidence), item


def predict_gallery(model_dir: str, split_dir: str, class_names: Sequence[str], normal_class: str,
                    gallery_size: int = 24, batch_size: int = 64,
                    multilabel: bool = False) -> Tuple[List[GalleryItem], int, List[List[int]]]:
    """Runs the exported model on a split's raw examples.

    Returns (the gallery: up to ``gallery_size`` misclassified wafers, missed defects first, then
    false alarms, then wrong patterns, each by descending confidence; the number misclassified;
    the arg-max confusion matrix over the split, rows = true class). With ``multilabel``,
    ``class_names`` are the patterns, a wafer is wrong when its pattern set is, and there is no matrix.
    """
    if multilabel:
        return _multilabel_gallery(model_dir, split_dir, class_names, normal_class, gallery_size, batch_size)
    model = tf.saved_model.load(model_dir)
    classify = model.signatures[EVAL_SIGNATURE]
    index = {name: i for i, name in enumerate(class_names)}
    normal_id = index[normal_class]
    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    wrong: List[Tuple[Tuple[int, float], GalleryItem]] = []
    total_wrong = 0
    for batch in _examples(split_dir, batch_size):
        outputs = classify(examples=batch)
        probabilities = outputs[PROBABILITIES].numpy()
        scores = outputs[DEFECT_SCORE].numpy().reshape(-1)
        predicted = probabilities.argmax(axis=1)
        for serialized, probs, score, guess in zip(batch.numpy(), probabilities, scores, predicted):
            example = tf.train.Example.FromString(serialized)
            label = _feature(example, features.LABEL_KEY).decode("utf-8")
            if label not in index:
                continue  # a class the model was not trained on: TFMA cannot score it either
            true_id = index[label]
            matrix[true_id, guess] += 1
            flagged = bool(score > 0.5)
            kind = _kind(true_id, flagged, normal_id)
            if guess == true_id and not kind:
                continue
            total_wrong += 1
            if len(wrong) >= _KEEP_MAX:
                continue
            wrong.append(_ranked_item(example, label, class_names[guess], float(probs[guess]), float(score), kind))
    wrong.sort(key=lambda pair: pair[0])
    return [item for _, item in wrong[:gallery_size]], total_wrong, matrix.tolist()


def _multilabel_gallery(model_dir: str, split_dir: str, patterns: Sequence[str], normal_class: str,
                        gallery_size: int, batch_size: int) -> Tuple[List[GalleryItem], int, List[List[int]]]:
    classify = tf.saved_model.load(model_dir).signatures[EVAL_SIGNATURE]
    wrong: List[Tuple[Tuple[int, float], GalleryItem]] = []
    total_wrong = 0
    for batch in _examples(split_dir, batch_size):
        outputs = classify(examples=batch)
        for serialized, probs, score in zip(batch.numpy(), outputs[PROBABILITIES].numpy(),
                                            outputs[DEFECT_SCORE].numpy().reshape(-1)):
            example = tf.train.Example.FromString(serialized)
            label = _feature(example, features.LABEL_KEY).decode("utf-8")
            predicted, confidence = _pattern_set(probs, patterns, normal_class)
            is_normal, flagged = label == normal_class, bool(score > 0.5)
            kind = "missed defect" if not is_normal and not flagged else "false alarm" if is_normal and flagged else ""
            if set(label_parts(predicted)) == set(label_parts(label)) and not kind:
                continue
            total_wrong += 1
            if len(wrong) >= _KEEP_MAX:
                continue
            wrong.append(_ranked_item(example, label, predicted, confidence, float(score), kind))
    wrong.sort(key=lambda pair: pair[0])
    return [item for _, item in wrong[:gallery_size]], total_wrong, []


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
    gallery, wrong, matrix = predict_gallery(
        model_dir, os.path.join(examples_uri, f"Split-{test_split}"), class_names, normal_class, gallery_size,
        multilabel=bool(summary.get("multilabel")),
    )
    if matrix:
        matrix = reorder_matrix(matrix, display_order(class_names, order))
    return ReportData(
        class_names=list(evaluation["class_names"]),
        normal_class=normal_class,
        evaluation=evaluation,
        gate=gate,
        blessed=blessed,
        operating_point=summary.get("operating_point", {}),
        history=read_history(model_run_dir),
        training_summary=summary,
        data_summary=read_json(os.path.join(quarantine_uri, QUARANTINE_SUMMARY_JSON)),
        gallery=gallery,
        misclassified_total=wrong,
        gallery_confusion=matrix,
        sources={"model": model_dir, "training run": model_run_dir, "evaluation": evaluation_uri,
                 "examples": examples_uri, "quarantine": quarantine_uri},
    )


def report_numbers(data: ReportData) -> Dict[str, Any]:
    """The report's numbers as JSON-ready data (written beside the HTML as report.json)."""
    return {
        "class_names": data.class_names,
        "normal_class": data.normal_class,
        "blessed": data.blessed,
        "gate": {"min_defect_recall": data.gate.min_defect_recall, "max_false_alarm_rate": data.gate.max_false_alarm_rate},
        "operating_point": data.operating_point,
        "evaluation": data.evaluation,
        "misclassified_total": data.misclassified_total,
        "gallery_confusion": data.gallery_confusion,
        "data_summary": data.data_summary,
    }
