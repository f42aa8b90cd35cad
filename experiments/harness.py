"""The experiments' shared harness: data set -> lot-disjoint train/test arrays -> train one
configuration -> test-split scores. One configuration per call, one progress line each.

Preprocessing is the pipeline's own (``components.transform.decode_and_resize``: PNG bytes ->
area resize -> [0, 1] floats) and training follows the Trainer's recipe (Circle Loss, balanced
class weights, cosine-annealed NAG, weight decay; class weighting, augmentation on or off and each
builder's model options from the same ``spanet.recipe`` functions the Trainer calls), so a number
here means what it means in the pipeline. Differences, on purpose: the arrays are resized once, so
augmentation is mirror and quarter turns only (``spanet.augment.dihedral``; the Trainer also
resamples die maps to other grids); fixed epochs (no early stopping, so configurations get equal
budgets), BatchNorm statistics re-estimated once after training
(``spanet.batchnorm.recalibrate_batchnorm``), and class predictions by arg-max (no operating
threshold): defect recall here is the share of defective test wafers predicted as any defect class.
"""

import hashlib
import math
import os
import platform
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from spanet import recipe
from spanet.data.classes import NORMAL_CLASS, WAFER_CLASSES
from spanet.data.records import WaferRecord

from spanet.data.generator import DEFAULT_CLASS_MIX  # noqa: E402  (the pipeline's default set's, too)

if TYPE_CHECKING:
    from spanet.augment import AugmentConfig


@dataclass(frozen=True)
class DataConfig:
    """Which data, how many maps, what input size, and how the test split is held out (by lot)."""

    #: Maps to generate (synthetic) or, for a user data set, the most to sample from it (0: all).
    count: int = 1000
    seed: int = 0
    image_size: int = 32
    channels: int = 1
    #: Share of lots held out for testing (at least one lot each side).
    test_fraction: float = 0.25
    #: Wafers per lot of the synthetic set; the split is by lot, so small lots give a finer split.
    lot_size: int = 10
    class_mix: Tuple[Tuple[str, float], ...] = DEFAULT_CLASS_MIX
    #: None: the synthetic benchmark, generated in-process; else a path the readers accept.
    data_path: Optional[str] = None
    data_format: str = "auto"
    normal_class: str = NORMAL_CLASS


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (the Trainer's defaults) and the budget of every configuration."""

    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 2e-2  # NAG / SGD (components.config.TrainingConfig)
    adam_learning_rate: float = 1e-3  # Adam's own usual rate: 2e-2 diverges
    final_learning_rate: float = 1e-4
    warmup_epochs: int = 1
    weight_decay: float = 5e-4
    gamma: float = 64.0
    margin: float = 0.25
    augment: bool = recipe.DEFAULT_AUGMENT
    batchnorm_batches: int = 20
    max_class_weight: float = recipe.DEFAULT_MAX_CLASS_WEIGHT
    seed: int = 0
    #: Eager steps: on a CPU, tracing a graph costs 30-100 s per network, more than a quick run's
    #: training; on a GPU (full mode) the graph is faster.
    run_eagerly: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """One configuration: network, width, builder options, optimiser and schedule."""

    label: str
    model: str = "spanet"
    width: float = 0.25
    #: Builder keyword arguments (r, attention, norm, head, block_depth_multiplier, ...).
    options: Tuple[Tuple[str, Any], ...] = ()
    optimizer: str = "nag"
    schedule: str = "cosine"
    #: What the configuration varies (ablation factor, model family, ...), for tables and plots.
    group: str = ""

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class Preset:
    """A mode's data, budget, base width and the three widths of the model comparison."""

    data: DataConfig
    train: TrainConfig
    width: float
    widths: Tuple[float, ...]


PRESETS: Dict[str, Preset] = {
    # Minutes per experiment on 2 shared CPU cores: 32x32 maps, a quarter-width network, 4 epochs.
    "quick": Preset(DataConfig(), TrainConfig(), width=0.25, widths=(0.25, 0.375, 0.5)),
    # For a GPU: the pipeline's 64x64 input, the paper's widths, a real budget.
    "full": Preset(
        DataConfig(count=20000, image_size=64, lot_size=25, test_fraction=0.2),
        TrainConfig(epochs=60, run_eagerly=False),
        width=1.0,
        widths=(0.5, 0.75, 1.0),
    ),
}


@dataclass
class Dataset:
    """Model-ready arrays of a lot-disjoint train / test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    normal_class: str
    description: str
    lots: Tuple[int, int] = (0, 0)

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def split_description(self) -> str:
        """The data set and its split, as each results page states it."""
        return (
            f"{self.description}; split by lot: {len(self.y_train)} train maps ({self.lots[0]} lots), "
            f"{len(self.y_test)} test maps ({self.lots[1]} lots)"
        )


@dataclass
class RunResult:
    """A trained configuration's test-split scores (macro averages over the classes in the test split)."""

    spec: ModelSpec
    accuracy: float
    precision: float
    recall: float
    f1: float
    defect_recall: Optional[float]
    parameters: int
    seconds: float
    extra: Dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- data


def _lot_rank(lot: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{lot}".encode("utf-8")).digest()


def split_by_lot(
    records: Sequence[WaferRecord], test_fraction: float, seed: int
) -> Tuple[List[WaferRecord], List[WaferRecord]]:
    """(train, test): whole lots, ordered by a seeded hash; the first ``test_fraction`` of them test.

    At least one lot goes to each side, so tiny data sets still get a test split.
    """
    lots = sorted({r.split_key for r in records}, key=lambda lot: _lot_rank(lot, seed))
    if len(lots) < 2:
        raise ValueError(f"a held-out split by lot needs at least 2 lots; the data has {len(lots)}")
    n_test = min(len(lots) - 1, max(1, int(round(test_fraction * len(lots)))))
    test_lots = set(lots[:n_test])
    return [r for r in records if r.split_key not in test_lots], [r for r in records if r.split_key in test_lots]


def load_records(config: DataConfig) -> Tuple[List[WaferRecord], str]:
    """The data set's records and a one-line description of where they came from."""
    if config.data_path is None:
        from spanet.data.generator import GeneratorConfig, generate_wafer_maps

        records = generate_wafer_maps(
            config.count, config.seed, GeneratorConfig(class_mix=dict(config.class_mix), lot_size=config.lot_size)
        )
        return records, (
            f"synthetic WM-811K-style wafer maps (spanet.data.generator): {config.count} maps, seed {config.seed}, "
            f"{config.lot_size} wafers per lot, class weights " + ", ".join(f"{c} {w:g}" for c, w in config.class_mix)
        )
    from spanet.data.readers import read_records

    records, rejected = [], 0
    for item in read_records(config.data_path, config.data_format):
        if isinstance(item, WaferRecord):
            records.append(item)
        else:
            rejected += 1
    total = len(records)
    if config.count and total > config.count:
        keep = np.random.default_rng(config.seed).choice(total, config.count, replace=False)
        records = [records[i] for i in sorted(keep)]
    return records, (
        f"{config.data_path} ({config.data_format}): {total} readable records ({rejected} rejected), "
        f"{len(records)} used" + (f" (random sample, seed {config.seed})" if len(records) < total else "")
    )


def class_order(labels: Iterable[str]) -> List[str]:
    """The data's classes: WM-811K's order first, then any others alphabetically."""
    present = set(labels)
    return [c for c in WAFER_CLASSES if c in present] + sorted(present - set(WAFER_CLASSES))


def to_model_input(records: Sequence[WaferRecord], size: int, channels: int) -> np.ndarray:
    """float32 (N, size, size, channels) in [0, 1], exactly as the pipeline's Transform makes them."""
    import tensorflow as tf

    from components.config import ImageConfig
    from components.transform import decode_and_resize
    from spanet.data.imageio import encode_png

    config = ImageConfig(height=size, width=size, channels=channels)
    batches = []
    for start in range(0, len(records), 512):
        encoded = tf.constant([encode_png(r.image) for r in records[start : start + 512]])
        batches.append(decode_and_resize(encoded, config).numpy())
    return np.concatenate(batches) if batches else np.zeros((0, size, size, channels), np.float32)


def load_dataset(config: DataConfig) -> Dataset:
    """The configured data set as lot-disjoint train / test arrays."""
    records, description = load_records(config)
    if not records:
        raise ValueError(f"no readable records in {config.data_path}")
    class_names = class_order(r.label for r in records)
    if len(class_names) < 2:
        raise ValueError(f"classification needs at least 2 classes; the data has {class_names}")
    train, test = split_by_lot(records, config.test_fraction, config.seed)
    index = {c: i for i, c in enumerate(class_names)}
    return Dataset(
        x_train=to_model_input(train, config.image_size, config.channels),
        y_train=np.array([index[r.label] for r in train], np.int64),
        x_test=to_model_input(test, config.image_size, config.channels),
        y_test=np.array([index[r.label] for r in test], np.int64),
        class_names=class_names,
        normal_class=config.normal_class,
        description=description,
        lots=(len({r.split_key for r in train}), len({r.split_key for r in test})),
    )


# -------------------------------------------------------------------------------------- scoring


def scores(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], normal_class: str
) -> Dict[str, Optional[float]]:
    """Accuracy, macro precision / recall / F1 (over classes present in the test split) and defect recall.

    Per-class numbers come from the same function as the pipeline's report
    (``components.eval_summary.class_metrics_from_confusion``).
    """
    from components.eval_summary import class_metrics_from_confusion

    k = len(class_names)
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    metrics = class_metrics_from_confusion(matrix, class_names)
    present = [m for m in metrics["per_class"].values() if m["support"] > 0]
    defect_recall = None
    if normal_class in class_names:
        normal = class_names.index(normal_class)
        defective = np.asarray(y_true) != normal
        if defective.any():
            defect_recall = float((np.asarray(y_pred)[defective] != normal).mean())
    return {
        "accuracy": metrics["accuracy"],
        "precision": float(np.mean([m["precision"] for m in present])),
        "recall": float(np.mean([m["recall"] for m in present])),
        "f1": metrics["macro_f1"],
        "defect_recall": defect_recall,
    }


# ------------------------------------------------------------------------------------- training


def builder_options(spec: ModelSpec, **overrides: Any) -> Dict[str, Any]:
    """The builder keyword arguments of a configuration: the recipe's model options for its network
    (``spanet.recipe.model_options``, as the Trainer's), then the configuration's own, then ``overrides``."""
    return {**recipe.model_options(spec.model), **dict(spec.options), **overrides}


def class_weights(labels: np.ndarray, num_classes: int, train: TrainConfig) -> np.ndarray:
    """Per-class weights of the recipe (``spanet.recipe.class_weights``: balanced, clipped at ``max_class_weight``)."""
    return recipe.class_weights(labels, num_classes, max_weight=train.max_class_weight)


def augmentation(train: TrainConfig) -> "Optional[AugmentConfig]":
    """The recipe's augmentation (``spanet.recipe.augment_config``; None: off). The arrays here are resized
    once, so only its exact orientations are applied (``spanet.augment.dihedral`` with its ``flip``)."""
    return recipe.augment_config(train.augment)


def count_parameters(spec: ModelSpec, num_classes: int, input_shape: Sequence[int], **overrides: Any) -> int:
    """Parameters of a configuration's network (with some builder options overridden), untrained."""
    from spanet import build_model
    from spanet._keras import keras

    model = build_model(
        spec.model,
        num_classes=num_classes,
        input_shape=tuple(input_shape),
        width=spec.width,
        **builder_options(spec, **overrides),
    )
    parameters = int(model.count_params())
    del model
    keras.backend.clear_session()
    return parameters


def train_and_evaluate(spec: ModelSpec, data: Dataset, train: TrainConfig) -> RunResult:
    """Trains one configuration from scratch on the train split and scores it on the test split."""
    import tensorflow as tf

    from spanet import CircleLoss, build_model, make_learning_rate, make_optimizer
    from spanet._keras import keras
    from spanet.augment import dihedral
    from spanet.batchnorm import recalibrate_batchnorm
    from spanet.tracing import trace_once

    started = time.time()
    keras.backend.clear_session()
    keras.utils.set_random_seed(train.seed)
    num_classes = len(data.class_names)
    model = build_model(
        spec.model, num_classes=num_classes, input_shape=data.input_shape, width=spec.width, **builder_options(spec)
    )
    steps = max(1, math.ceil(len(data.y_train) / train.batch_size))
    rate = train.adam_learning_rate if spec.optimizer == "adam" else train.learning_rate
    schedule, callbacks = make_learning_rate(
        spec.schedule,
        rate,
        min(train.final_learning_rate, rate),
        total_steps=train.epochs * steps,
        warmup_steps=train.warmup_epochs * steps,
        monitor="loss",  # no validation split: plateau on the training loss
    )
    model.compile(
        optimizer=make_optimizer(spec.optimizer, schedule, weight_decay=train.weight_decay),
        loss=CircleLoss(train.gamma, train.margin),
        run_eagerly=train.run_eagerly,
    )
    if not train.run_eagerly:
        trace_once(model)
    weights = class_weights(data.y_train, num_classes, train)
    dataset = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train, weights[data.y_train]))
    dataset = (
        dataset.shuffle(len(data.y_train), seed=train.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(train.batch_size)
    )
    augment = augmentation(train)
    if augment is not None:
        dataset = dataset.map(lambda x, y, w: (dihedral(x, augment.flip), y, w), num_parallel_calls=tf.data.AUTOTUNE)
    model.fit(dataset.prefetch(2), epochs=train.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    images = (
        tf.data.Dataset.from_tensor_slices(data.x_train)
        .shuffle(len(data.y_train), seed=train.seed)
        .batch(train.batch_size)
    )
    recalibrate_batchnorm(model, images, train.batchnorm_batches)
    logits = np.concatenate(
        [model(data.x_test[i : i + 256], training=False).numpy() for i in range(0, len(data.y_test), 256)]
    )
    result = scores(data.y_test, logits.argmax(axis=1), data.class_names, data.normal_class)
    return RunResult(spec=spec, parameters=int(model.count_params()), seconds=time.time() - started, **result)


def run_all(
    specs: Sequence[ModelSpec],
    data: Dataset,
    train: TrainConfig,
    limit: Optional[int] = None,
    progress: Callable[[str], None] = print,
) -> List[RunResult]:
    """Trains the configurations in order (the first ``limit`` of them), one progress line each."""
    chosen = list(specs)[:limit] if limit else list(specs)
    results = []
    for number, spec in enumerate(chosen, start=1):
        result = train_and_evaluate(spec, data, train)
        recall = "n/a" if result.defect_recall is None else f"{result.defect_recall:.4f}"
        progress(
            f"[{number}/{len(chosen)}] {spec.label}: accuracy {result.accuracy:.4f}, macro-F1 {result.f1:.4f}, "
            f"defect recall {recall}, {result.parameters:,} parameters, {result.seconds:.0f} s"
        )
        results.append(result)
    return results


# -------------------------------------------------------------------------------------- context


def machine_description() -> str:
    """CPU / GPU, cores, memory and library versions: the machine a result was made on."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            kib = int(next(line.split()[1] for line in handle if line.startswith("MemTotal")))
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{cpu}, {cores} cores{memory}, {len(gpus)} GPU(s); {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}"
    )


def with_overrides(
    preset: Preset, width: Optional[float] = None, widths: Optional[Sequence[float]] = None, **changes: Any
) -> Preset:
    """A preset with command-line overrides applied (None leaves a setting as it is)."""
    data = {k: v for k, v in changes.items() if k in DataConfig.__dataclass_fields__ and v is not None}
    train = {k: v for k, v in changes.items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    unknown = set(changes) - set(DataConfig.__dataclass_fields__) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}")
    return Preset(
        replace(preset.data, **data),
        replace(preset.train, **train),
        width if width is not None else preset.width,
        tuple(widths) if widths else preset.widths,
    )
