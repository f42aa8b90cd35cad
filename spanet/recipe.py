"""The training recipe's library half: class weighting, augmentation and which builder takes which options.

Plain arguments only (no TFX, no configuration classes). The pipeline's Trainer (``components.trainer``)
and the paper's experiments (``experiments.harness``) both call these, so each default lives here once
(``components.config.TrainingConfig`` states these constants as its defaults).

Importing this module does not import TensorFlow: :func:`augment_config` loads ``spanet.augment`` when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

from spanet.validation import check_choice

if TYPE_CHECKING:
    from spanet.augment import AugmentConfig

#: Class weighting: "balanced" (inverse class frequency, clipped) or "none" (every example weighs 1).
CLASS_WEIGHTINGS: Tuple[str, ...] = ("balanced", "none")
DEFAULT_CLASS_WEIGHTING = "balanced"
#: Balanced weights are clipped to [1 / this, this].
DEFAULT_MAX_CLASS_WEIGHT = 20.0

#: Training augmentation on, and its settings: any-angle rotation (False: quarter turns and mirrors, exact),
#: the share of maps moved to another grid size / aspect ratio, and die noise. The first two are
#: ``spanet.augment.AugmentConfig``'s own defaults (``rotate``, ``resample_share``), restated here so that
#: this module does not import TensorFlow; tests/spanet/test_recipe.py checks that they agree.
DEFAULT_AUGMENT = True
DEFAULT_AUGMENT_ANY_ANGLE = False
DEFAULT_AUGMENT_REGRID_SHARE = 0.3
DEFAULT_AUGMENT_DIE_NOISE = True

#: The model options of the recipe: ``spanet.models.build_spanet``'s defaults (the paper's choices):
#: composition ratio, attention in every block, LayerNorm inside attention, the Conv1x1 head.
DEFAULT_R = 0.5
DEFAULT_ATTENTION = True
DEFAULT_NORM = "layer"
DEFAULT_HEAD = "conv1x1"
#: Which of those options each builder takes (the GhostNet-style net is SP&A-Net without attention;
#: the other networks take none of them).
MODEL_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "spanet": ("r", "attention", "norm", "head"),
    "ghostnet": ("r", "norm", "head"),
}


def class_weights(
    labels: np.ndarray,
    num_classes: int,
    mode: str = DEFAULT_CLASS_WEIGHTING,
    max_weight: float = DEFAULT_MAX_CLASS_WEIGHT,
) -> np.ndarray:
    """Per-class weights, float32 (num_classes,), for class ids ``labels``.

    "balanced": n / (K * n_c) over the K classes present, clipped to [1 / max_weight, max_weight];
    a class absent from ``labels`` gets 1. "none": all ones.
    """
    check_choice("mode", mode, CLASS_WEIGHTINGS)
    if mode == "none":
        return np.ones(num_classes, np.float32)
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return np.clip(weights, 1.0 / max_weight, max_weight).astype(np.float32)


def model_options(
    model: str,
    r: float = DEFAULT_R,
    attention: bool = DEFAULT_ATTENTION,
    norm: str = DEFAULT_NORM,
    head: str = DEFAULT_HEAD,
) -> Dict[str, Any]:
    """The keyword arguments ``spanet.build_model(model, ...)`` takes from the recipe's model options.

    SP&A-Net takes r, attention, norm and head; the GhostNet-style net r, norm and head (it has no
    attention); every other network (and an unknown name, which ``build_model`` then rejects) none.
    """
    values = {"r": r, "attention": attention, "norm": norm, "head": head}
    return {name: values[name] for name in MODEL_OPTIONS.get(model, ())}


def augment_config(
    augment: bool = DEFAULT_AUGMENT,
    any_angle: bool = DEFAULT_AUGMENT_ANY_ANGLE,
    regrid_share: float = DEFAULT_AUGMENT_REGRID_SHARE,
    die_noise: bool = DEFAULT_AUGMENT_DIE_NOISE,
) -> "Optional[AugmentConfig]":
    """The die-level augmentation the recipe trains with (``spanet.augment``); None when ``augment`` is off.

    Without ``die_noise`` no die changes state; otherwise the noise rates are ``AugmentConfig``'s.
    Quarter turns and mirrors (``AugmentConfig.flip``, applied by ``spanet.augment.dihedral``) are on.
    """
    from spanet.augment import AugmentConfig

    if not augment:
        return None
    noise = AugmentConfig()
    return AugmentConfig(
        rotate=any_angle,
        resample_share=regrid_share,
        max_pass_to_fail=noise.max_pass_to_fail if die_noise else 0.0,
        max_fail_to_pass=noise.max_fail_to_pass if die_noise else 0.0,
    )


__all__ = [
    "CLASS_WEIGHTINGS",
    "DEFAULT_ATTENTION",
    "DEFAULT_AUGMENT",
    "DEFAULT_AUGMENT_ANY_ANGLE",
    "DEFAULT_AUGMENT_DIE_NOISE",
    "DEFAULT_AUGMENT_REGRID_SHARE",
    "DEFAULT_CLASS_WEIGHTING",
    "DEFAULT_HEAD",
    "DEFAULT_MAX_CLASS_WEIGHT",
    "DEFAULT_NORM",
    "DEFAULT_R",
    "MODEL_OPTIONS",
    "augment_config",
    "class_weights",
    "model_options",
]
