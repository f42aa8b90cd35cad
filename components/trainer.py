"""The Trainer's ``run_fn``: SP&A-Net with Circle Loss on the transformed examples.

Trains on ExampleGen's raw examples (Transform's decode and resize, with die-level
augmentation between them: any rotation, mirror, other grids, die noise) with NAG and
cosine annealing (configurable), balanced class weights (real wafer data is ~85% normal), early stopping on the eval
split and TensorBoard logs in the run directory; then calibrates the probabilities,
picks the defect flag's operating threshold on the eval split, and exports the
SavedModel with its raw-image and tf.Example signatures.

In multi-label mode (``ImageConfig.patterns``) the network has one cosine output per pattern,
trained with the multi-label form of Circle Loss on the multi-hot patterns each label names;
calibration fits one sigmoid scale, and P(normal) is 1 - the largest pattern probability.
"""

from __future__ import annotations

import os


import json
import math
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from components import features
from components.config import LABEL_VOCABULARY, PATTERN_THRESHOLD, ImageConfig, ModuleConfig, TrainingConfig
from components.operating_point import OperatingPoint, choose_threshold
from components.serving import ServingModel, export_serving_model
from components.transform import decode, resize
from components.warmup import WARMUP_FILE, warmup_file_bytes
from spanet import CircleLoss, build_model, distribute, make_learning_rate, make_optimizer, recipe
from spanet._keras import keras
from spanet.augment import augment_wafer_map, dihedral, mean_over_orientations
from spanet.batchnorm import PreciseBatchNormValidation
from spanet.calibration import (
    expected_calibration_error,
    fit_sigmoid_temperature,
    fit_temperature,
    sigmoid_probabilities,
    softmax_probabilities,
)
from spanet.data.classes import label_parts
from spanet.input_pipeline import without_autotuning
from spanet.progress import EpochProgress
from spanet.ood import (
    STATISTICS,
    familiarity_threshold,
    fit_envelope,
    input_statistics,
    multilabel_familiarity,
    outside_envelope,
)
from spanet.tracing import trace_once

#: Files the Trainer leaves in its run directory (beside the TensorBoard logs).
HISTORY_CSV = "history.csv"
TRAINING_SUMMARY_JSON = "training_summary.json"
#: Copied into the SavedModel (``assets.extra`` is ignored by TF Serving's loader).
OPERATING_POINT_JSON = "assets.extra/spanet_operating_point.json"


def _files(patterns: Sequence[str]) -> List[str]:
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {list(patterns)}")
    return files


def _raw_records(patterns: Sequence[str], class_names: Sequence[str]) -> tf.data.Dataset:
    """(encoded image, class id) pairs from ExampleGen's gzipped raw tf.Examples, ids in ``class_names`` order."""
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABEL_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(class_names)), tf.range(len(class_names), dtype=tf.int64)),
        default_value=-1,
    )

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        return parsed[features.IMAGE_KEY], table.lookup(parsed[features.LABEL_KEY])

    dataset = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP").batch(256)
    return dataset.map(parse, num_parallel_calls=os.cpu_count() or 1).unbatch()


def read_labels(patterns: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """The class ids of a split (a quick pass: labels only, no image decoded)."""
    labels = _raw_records(patterns, class_names).map(lambda image, label: label).batch(4096)
    return np.concatenate([batch.numpy() for batch in labels] or [np.zeros([0], np.int64)])


def class_weights(labels: np.ndarray, num_classes: int, config: TrainingConfig) -> np.ndarray:
    """The configured class weights (``spanet.recipe.class_weights``: balanced n / (K * n_c), clipped to
    [1 / max, max]; all ones when weighting is off)."""
    return recipe.class_weights(labels, num_classes, config.class_weighting, config.max_class_weight)


def make_dataset(
    patterns: Sequence[str],
    class_names: Sequence[str],
    image: ImageConfig,
    batch_size: int,
    training: bool,
    weights: np.ndarray,
    config: TrainingConfig,
    example_count: int,
    cache: bool = True,
    targets: Optional[np.ndarray] = None,
) -> tf.data.Dataset:
    """(image, label, sample weight) batches from ExampleGen's raw examples.

    The label is the class id; with ``targets`` (one row per class id: the multi-hot patterns that
    label names) it is that row.

    Images go through Transform's own :func:`decode` and :func:`resize` (the exported model's
    preprocessing), with die-level augmentation between the two for training. Training caches the
    encoded bytes and augments afresh every epoch, forever; evaluation caches the model inputs (unless
    ``cache`` is False, for a single pass) and declares its number of batches, which Keras needs to
    evaluate with ``steps_per_execution > 1``.
    """
    table = tf.constant(weights)
    parallel = os.cpu_count() or 1
    augment = config.augment_config() if training else None

    def prepare(encoded, label):
        pixels = decode(encoded, image)
        if augment is not None:
            pixels = augment_wafer_map(pixels, augment)
        return resize(pixels, image), label

    dataset = _raw_records(patterns, class_names)
    if training:
        dataset = dataset.cache().shuffle(4096, seed=config.seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.map(prepare, num_parallel_calls=parallel)
    if not training and cache:
        dataset = dataset.cache()
    dataset = dataset.batch(batch_size)
    if training and augment is not None:
        dataset = dataset.map(
            lambda images, labels: (dihedral(images, augment.flip), labels), num_parallel_calls=parallel
        )
    if not training:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(math.ceil(example_count / batch_size)))
    if targets is not None:
        rows = tf.constant(targets, tf.float32)
        dataset = dataset.map(lambda images, labels: (images, tf.gather(rows, labels), tf.gather(table, labels)))
    else:
        dataset = dataset.map(lambda images, labels: (images, labels, tf.gather(table, labels)))
    return without_autotuning(dataset.prefetch(2))


def pattern_targets(class_names: Sequence[str], patterns: Sequence[str]) -> np.ndarray:
    """(K, P) float32: row k the multi-hot patterns that label ``class_names[k]`` names (``+``-separated)."""
    rows = np.zeros((len(class_names), len(patterns)), np.float32)
    for k, name in enumerate(class_names):
        for part in label_parts(name):
            if part in patterns:
                rows[k, list(patterns).index(part)] = 1.0
    return rows


def build_classifier(num_classes: int, image: ImageConfig, config: TrainingConfig, **options: Any) -> keras.Model:
    """The configured network (SP&A-Net by default) with cosine logits; the builder takes the model
    options that ``spanet.recipe.model_options`` gives it, and ``options`` on top (e.g. the published
    code's ``reference_attention`` for a speed comparison)."""
    return build_model(
        config.model,
        num_classes=num_classes,
        input_shape=(image.height, image.width, image.input_channels),
        width=config.width,
        **recipe.model_options(
            config.model, r=config.r, attention=config.attention, norm=config.norm, head=config.head
        ),
        **options,
    )


def cosine_logits(
    model: keras.Model, dataset: tf.data.Dataset, orientations: int = 1, image_channels: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's cosine logits (averaged over ``orientations``, as served), the true labels and the
    inputs' pixel statistics (of their first ``image_channels`` channels) over a finite dataset."""
    cosines, labels, statistics = [], [], []
    classify = tf.function(lambda images: mean_over_orientations(model, images, orientations), autograph=False)
    for images, batch_labels, _ in dataset:
        cosines.append(classify(images).numpy())
        labels.append(batch_labels.numpy())
        statistics.append(input_statistics(images, image_channels).numpy())
    return np.concatenate(cosines), np.concatenate(labels), np.concatenate(statistics)


def statistics_of(dataset: tf.data.Dataset, image_channels: Optional[int] = None) -> np.ndarray:
    """The model inputs' pixel statistics (spanet.ood, of their first ``image_channels`` channels) over a
    finite, un-augmented dataset, (N, 3)."""
    statistics = [input_statistics(images, image_channels).numpy() for images, _, _ in dataset]
    return np.concatenate(statistics) if statistics else np.zeros([0, len(STATISTICS)])


def class_names_and_normal_id(tft_output: tft.TFTransformOutput, image: ImageConfig) -> Tuple[List[str], int]:
    """The class names in id order (Transform's label vocabulary) and the normal class's id."""
    names = [c.decode() if isinstance(c, bytes) else c for c in tft_output.vocabulary_by_name(LABEL_VOCABULARY)]
    if len(names) < 2:
        raise ValueError(f"training needs at least 2 classes; the data has {names}")
    if image.normal_class not in names:
        raise ValueError(
            f"the normal class {image.normal_class!r} is not among the training labels {names}: "
            "defect recall needs normal wafers (set the normal class in the pipeline config)"
        )
    return names, names.index(image.normal_class)


def learning_rate_for(
    config: TrainingConfig, replica_count: int, steps_per_epoch: int, epochs: int
) -> Tuple[Any, List[keras.callbacks.Callback]]:
    """The configured schedule for ``replica_count`` replicas of ``config.batch_size`` each.

    One replica: exactly the configured schedule. More: the rates scaled to the global batch
    (``spanet.distribute.scale_learning_rate``) behind a warm-up of at least one epoch; a ``constant``
    rate then becomes a warmed-up constant (a cosine from the rate to itself), and ``plateau`` (a
    callback on a plain rate) starts at the scaled rate without one.
    """
    global_batch = distribute.global_batch_size(config.batch_size, replica_count)
    schedule = config.schedule
    initial = distribute.scale_learning_rate(config.learning_rate, global_batch, config.batch_size, config.optimizer)
    final = distribute.scale_learning_rate(
        config.final_learning_rate, global_batch, config.batch_size, config.optimizer
    )
    warmup_epochs = distribute.scaled_warmup_epochs(config.warmup_epochs, global_batch, config.batch_size)
    if replica_count > 1:
        logging.info(
            "%d replicas: global batch %d, learning rate %g (configured %g at batch %d), %d warm-up epoch(s)",
            replica_count,
            global_batch,
            initial,
            config.learning_rate,
            config.batch_size,
            warmup_epochs,
        )
        if schedule == "constant":
            schedule, final = "cosine", initial
        elif schedule == "plateau":
            logging.warning("the plateau schedule has no warm-up: training starts at the scaled rate %g", initial)
    return make_learning_rate(
        schedule,
        initial,
        final,
        total_steps=epochs * steps_per_epoch,
        warmup_steps=warmup_epochs * steps_per_epoch,
    )


def fit(
    model: keras.Model,
    train: tf.data.Dataset,
    evaluation: tf.data.Dataset,
    config: TrainingConfig,
    run_dir: str,
    steps_per_epoch: int,
    epochs: int,
    multilabel: bool = False,
) -> keras.callbacks.History:
    """Compiles and trains with Circle Loss (its multi-label form with ``multilabel``); logs to
    TensorBoard and CSV in ``run_dir``; stops early on eval.

    The model's strategy (the one it was built under) trains it: ``train`` and ``evaluation`` must then
    be batched with the global batch (``spanet.distribute.global_batch_size``) and ``steps_per_epoch``
    count global steps; the learning rate is the configured one scaled to that batch
    (:func:`learning_rate_for`).
    """
    rate, schedule_callbacks = learning_rate_for(
        config, distribute.replicas(model.distribute_strategy), steps_per_epoch, epochs
    )
    # The optimizer's slots, the metrics and the loss belong to the model's strategy (Keras refuses
    # metrics made outside it); under the default strategy the scope changes nothing.
    with model.distribute_strategy.scope():
        model.compile(
            optimizer=make_optimizer(config.optimizer, rate, weight_decay=config.weight_decay),
            # Reduction SUM_OVER_BATCH_SIZE (Keras' default): under a strategy each replica's mean is
            # divided by the replicas, so the summed gradients are the global batch's mean.
            loss=CircleLoss(config.gamma, config.margin, form="multilabel" if multilabel else "class"),
            # Multi-label: the exact-match rate is judged after calibration (the cosines' boundary is 0.5).
            metrics=[] if multilabel else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            # The batches carry class weights for the loss; the accuracy is the plain one (and Keras
            # otherwise warns at every evaluation that the weights are not applied to it).
            weighted_metrics=[],
            steps_per_execution=config.steps_per_execution,
        )
        trace_once(model)
    tf.io.gfile.makedirs(run_dir)
    # BN statistics trail the weights on small data; re-estimate them before every validation so
    # early stopping, the logs and the exported model all see true inference-mode behaviour.
    progress = EpochProgress(epochs)
    precise_validation = PreciseBatchNormValidation(
        train.map(lambda images, labels, weights: images), evaluation, config.batchnorm_recalibration_batches
    )
    callbacks = (
        [precise_validation]
        + schedule_callbacks
        + [
            progress,
            keras.callbacks.TensorBoard(log_dir=run_dir, update_freq="epoch"),
            keras.callbacks.CSVLogger(os.path.join(run_dir, HISTORY_CSV)),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
            ),
        ]
    )
    # EarlyStopping restores the best epoch's weights with their recalibrated statistics; without an
    # early stop, the last epoch's statistics were recalibrated at its end.
    history = model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0)
    history.epoch_seconds = list(progress.durations)  # wall time of each epoch, validation included
    return history


def phase_timing(epoch_seconds: Sequence[float], calibration_seconds: float) -> Dict[str, float]:
    """The Trainer's own timing, in seconds: the first epoch also traces the graphs, so what it took
    beyond the median of the others is the graph building."""
    first = float(epoch_seconds[0]) if epoch_seconds else 0.0
    median = float(np.median(epoch_seconds[1:])) if len(epoch_seconds) > 1 else first
    return {
        "fit": round(float(np.sum(epoch_seconds)), 1),
        "first_epoch": round(first, 1),
        "median_epoch": round(median, 2),
        "graph_building": round(max(first - median, 0.0), 1),
        "calibration": round(calibration_seconds, 1),
    }


def calibrate(
    model: keras.Model,
    evaluation: tf.data.Dataset,
    normal_id: int,
    train_statistics: np.ndarray,
    config: TrainingConfig,
    multilabel: bool = False,
    image_channels: Optional[int] = None,
) -> Tuple[float, OperatingPoint, Dict[str, Any], Tuple[np.ndarray, np.ndarray]]:
    """Temperature, the unknown-input checks, the defect flag's operating point, and eval quality.

    The envelope of the inputs' pixel statistics (spanet.ood) spans the training inputs
    (``train_statistics``) and the eval inputs as the model sees them; the familiarity threshold is then
    chosen so that at most ``max_unknown_rate`` of the normal eval wafers are unknown by either
    check. Unknown wafers are flagged anyway, so the operating point is chosen on the rest.
    With ``multilabel`` the eval labels are multi-hot (normal: all zero) and ``normal_id`` is unused.
    """
    cosines, labels, statistics = cosine_logits(model, evaluation, config.test_time_orientations, image_channels)
    envelope = fit_envelope(np.concatenate([train_statistics, statistics]))
    if multilabel:
        scale = fit_sigmoid_temperature(cosines, labels)
        probabilities = sigmoid_probabilities(cosines, scale)
        familiarity = multilabel_familiarity(cosines).numpy()
        normal = ~labels.astype(bool).any(axis=1)
        p_normal = 1.0 - probabilities.max(axis=1)
        accuracy = float(
            ((probabilities >= PATTERN_THRESHOLD) == labels.astype(bool)).all(axis=1).mean()
        )  # exact match
        # Calibration of every (wafer, pattern) decision, as a two-class problem each.
        calibration_error = expected_calibration_error(
            np.stack([1.0 - probabilities.ravel(), probabilities.ravel()], axis=1), labels.ravel().astype(np.int64)
        )
    else:
        scale = fit_temperature(cosines, labels) if len(np.unique(labels)) > 1 else config.gamma / 4.0
        probabilities = softmax_probabilities(cosines, scale)
        familiarity = cosines.max(axis=1)
        normal = labels == normal_id
        p_normal = probabilities[:, normal_id]
        accuracy = float((probabilities.argmax(axis=1) == labels).mean())
        calibration_error = expected_calibration_error(probabilities, labels)
    outside = outside_envelope(statistics, *envelope).numpy()
    # Wafers outside the envelope are rejected whatever their familiarity: spend the rest of the budget.
    budget = max(0.0, config.max_unknown_rate - outside[normal].mean()) if normal.any() else 0.0
    threshold = familiarity_threshold(
        familiarity[normal & ~outside], budget * normal.sum() / max((normal & ~outside).sum(), 1)
    )
    unknown = outside | (familiarity < threshold)
    if config.unknown_is_defective:
        p_normal = np.where(unknown, 0.0, p_normal)  # an unknown wafer is flagged whatever its P(normal)
    point = choose_threshold(
        p_normal, ~normal, config.target_defect_recall, config.max_normal_threshold, config.max_false_alarm_rate
    )
    quality = {
        "eval_accuracy": accuracy,
        "eval_calibration_error": calibration_error,
        "familiarity_threshold": threshold,
        "input_envelope": {name: [float(lo), float(hi)] for name, lo, hi in zip(STATISTICS, *envelope)},
        "eval_unknown_rate": float(unknown.mean()),
        "eval_unknown_rate_normal": float(unknown[normal].mean()) if normal.any() else 0.0,
    }
    return scale, point, quality, envelope


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (``run_fn='components.trainer.run_fn'``).

    Trains on the devices the node has (``spanet.distribute.choose_strategy``: several GPUs mirrored,
    several ``TF_CONFIG`` workers multi-worker, else one device); ``batch_size`` is per replica.
    """
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = distribute.choose_strategy()
    module_config = ModuleConfig.from_custom_config(fn_args.custom_config)
    image, config = module_config.image, module_config.training
    tf.keras.utils.set_random_seed(config.seed)
    replica_count = distribute.replicas(strategy)
    batch_size = distribute.global_batch_size(config.batch_size, replica_count)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    # Every worker runs the same steps (collective ops), but only the chief's files are the run's.
    chief = distribute.is_chief()
    run_dir = fn_args.model_run_dir if chief else tempfile.mkdtemp(prefix="spanet-worker-")
    logging.info(
        "strategy %s: %d replica(s), global batch %d (%d per replica)%s",
        type(strategy).__name__,
        replica_count,
        batch_size,
        config.batch_size,
        "" if chief else "; not the chief: logs and export go to a temporary folder",
    )

    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names, normal_id = class_names_and_normal_id(tft_output, image)
    num_classes = len(class_names)
    train_labels = read_labels(fn_args.train_files, class_names)
    eval_labels = read_labels(fn_args.eval_files, class_names)
    weights = class_weights(train_labels, num_classes, config)
    logging.info(
        "classes %s; train %d, eval %d examples; class weights %s",
        class_names,
        len(train_labels),
        len(eval_labels),
        np.round(weights, 2).tolist(),
    )

    targets = pattern_targets(class_names, image.patterns) if image.multilabel else None
    if targets is not None:
        logging.info("multi-label over patterns %s", list(image.patterns))
    train = make_dataset(
        fn_args.train_files,
        class_names,
        image,
        batch_size,
        True,
        weights,
        config,
        len(train_labels),
        targets=targets,
    )
    evaluation = make_dataset(
        fn_args.eval_files,
        class_names,
        image,
        batch_size,
        False,
        np.ones(num_classes, np.float32),
        config,
        len(eval_labels),
        targets=targets,
    )
    if multi_worker:
        train, evaluation = distribute.shard_by_data(train), distribute.shard_by_data(evaluation)
    steps_per_epoch = max(1, math.ceil(len(train_labels) / batch_size))
    epochs = config.epochs
    if fn_args.train_steps:  # TrainArgs(num_steps=...) caps the total
        epochs = max(1, min(epochs, math.ceil(fn_args.train_steps / steps_per_epoch)))

    outputs = class_names if targets is None else list(image.patterns)  # the network's output columns
    with strategy.scope():  # the model's variables are mirrored on every replica
        model = build_classifier(len(outputs), image, config)
    history = fit(model, train, evaluation, config, run_dir, steps_per_epoch, epochs, image.multilabel)
    train_inputs = make_dataset(
        fn_args.train_files,
        class_names,
        image,
        batch_size,
        False,
        weights,
        config,
        len(train_labels),
        cache=False,
    )
    started = time.monotonic()
    scale, point, quality, envelope = calibrate(
        model,
        evaluation,
        normal_id,
        statistics_of(train_inputs, image.channels),
        config,
        image.multilabel,
        image.channels,
    )
    timing = phase_timing(history.epoch_seconds, time.monotonic() - started)
    logging.info(
        "operating point on eval: %s; unknown below familiarity %.4f (eval: %.4f of all, %.4f of normal wafers)",
        json.dumps(point.to_dict()),
        quality["familiarity_threshold"],
        quality["eval_unknown_rate"],
        quality["eval_unknown_rate_normal"],
    )
    if not point.target_reached:
        logging.warning(
            "defect recall %.4f on eval is below the target %.4f at the threshold %.3f (limited by the %s): "
            "the Evaluator may not bless this model",
            point.defect_recall,
            config.target_defect_recall,
            point.threshold,
            point.limited_by,
        )

    summary = {
        # The probabilities' columns: the classes, or in multi-label mode the patterns.
        "class_names": outputs,
        "normal_class": image.normal_class,
        "multilabel": image.multilabel,
        # The label values trained on (multi-label: each combination of patterns seen, and the normal class).
        "label_names": class_names,
        "epochs_run": len(history.history["loss"]),
        "replicas": replica_count,
        "global_batch_size": batch_size,
        "train_examples": int(len(train_labels)),
        "eval_examples": int(len(eval_labels)),
        "class_weights": weights.tolist(),
        "probability_scale": scale,
        **quality,
        "operating_point": point.to_dict(),
        "parameters": int(model.count_params()),
        "timing_s": timing,
        **module_config.to_custom_config(),  # "image" and "training"
    }
    summary_json = json.dumps(summary, indent=2).encode()
    with tf.io.gfile.GFile(os.path.join(run_dir, TRAINING_SUMMARY_JSON), "wb") as handle:
        handle.write(summary_json)
    serving = ServingModel(
        model,
        tft_output,
        outputs,
        -1 if image.multilabel else normal_id,
        scale,
        point.threshold,
        quality["familiarity_threshold"],
        envelope,
        config.unknown_is_defective,
        config.test_time_orientations,
        normal_class=image.normal_class,
        multilabel=image.multilabel,
        statistics_channels=image.channels,
    )
    started = time.monotonic()
    export_serving_model(
        fn_args.serving_model_dir if chief else os.path.join(run_dir, "serving_model"),
        serving,
        extra_files={
            OPERATING_POINT_JSON: summary_json,
            WARMUP_FILE: warmup_file_bytes(module_config.model_name, image.height, image.width, image.channels),
        },
    )
    logging.info("timing (s): %s; export %.1f", json.dumps(timing), time.monotonic() - started)
    if not chief:
        shutil.rmtree(run_dir, ignore_errors=True)
