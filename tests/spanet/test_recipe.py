"""The training recipe (spanet.recipe): class weights, model options per builder, augmentation; and that the
pipeline's Trainer and the experiments' harness get the same numbers from it."""

import inspect

import numpy as np
import pytest

from spanet import recipe
from spanet.recipe import augment_config, class_weights, model_options

# ------------------------------------------------------------------------------------ class weights


def test_balanced_weights_are_inverse_frequency_over_present_classes():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)  # 100 labels, 3 of 4 classes present
    weights = class_weights(labels, 4)
    assert weights.dtype == np.float32 and weights.shape == (4,)
    np.testing.assert_allclose(weights, [100 / (3 * 60), 100 / (3 * 30), 100 / (3 * 10), 1.0], rtol=1e-6)


def test_balanced_weights_are_clipped_at_the_max_both_ways():
    labels = np.array([0] * 999 + [1])
    # 1000 / (2 * 1) = 500 -> 20 (the default max); 1000 / (2 * 999) = 0.5005 stays
    np.testing.assert_allclose(class_weights(labels, 2), [1000 / 1998, 20.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights(labels, 2, max_weight=5.0), [1000 / 1998, 5.0], rtol=1e-6)
    # the lower bound 1 / max: 1000 / 1998 = 0.5005 -> 1 / 1.5
    np.testing.assert_allclose(class_weights(labels, 2, max_weight=1.5), [1 / 1.5, 1.5], rtol=1e-6)


def test_no_weighting_gives_ones_and_unknown_modes_are_refused():
    weights = class_weights(np.array([0, 0, 0, 1]), 3, mode="none")
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="mode must be one of 'balanced', 'none'"):
        class_weights(np.array([0, 1]), 2, mode="focal")


def test_empty_labels_give_neutral_weights():
    np.testing.assert_array_equal(class_weights(np.zeros([0], np.int64), 3), [1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------ model options


def test_model_options_per_builder():
    assert model_options("spanet") == {"r": 0.5, "attention": True, "norm": "layer", "head": "conv1x1"}
    assert model_options("ghostnet") == {"r": 0.5, "norm": "layer", "head": "conv1x1"}  # no attention: it has none
    for name in ("mobilenet_v2", "mobilenet_v3", "resnet50_gc", "no_such_net"):
        assert model_options(name, r=0.25, attention=False, norm="batch", head="gap") == {}
    assert model_options("spanet", r=0.25, attention=False, norm="group", head="gap") == {
        "r": 0.25,
        "attention": False,
        "norm": "group",
        "head": "gap",
    }
    assert model_options("ghostnet", r=0.25, attention=True, norm="batch", head="gap") == {
        "r": 0.25,
        "norm": "batch",
        "head": "gap",
    }


def test_model_options_cover_the_builders_and_their_defaults():
    from spanet.models import MODEL_BUILDERS, build_spanet

    assert set(recipe.MODEL_OPTIONS) <= set(MODEL_BUILDERS)
    defaults = {name: p.default for name, p in inspect.signature(build_spanet).parameters.items()}
    # The recipe's defaults are SP&A-Net's own: building with model_options() changes nothing.
    assert model_options("spanet") == {name: defaults[name] for name in ("r", "attention", "norm", "head")}
    for model, names in recipe.MODEL_OPTIONS.items():
        accepted = inspect.signature(MODEL_BUILDERS[model]).parameters
        assert all(name in accepted or "kwargs" in accepted for name in names), model


# ------------------------------------------------------------------------------------- augmentation


def test_augment_config_follows_the_settings():
    from spanet.augment import AugmentConfig

    assert augment_config(False) is None
    # The recipe's defaults are AugmentConfig's own (restated in spanet.recipe without importing TensorFlow).
    assert augment_config() == AugmentConfig()
    assert augment_config() == AugmentConfig(
        rotate=False, resample_share=0.3, max_pass_to_fail=0.01, max_fail_to_pass=0.03
    )
    quiet = augment_config(any_angle=True, regrid_share=0.5, die_noise=False)
    assert quiet == AugmentConfig(rotate=True, resample_share=0.5, max_pass_to_fail=0.0, max_fail_to_pass=0.0)
    assert quiet.flip is True


# ------------------------------------------------------------------ one recipe: Trainer and harness


def test_training_config_defaults_are_the_recipes():
    from components.config import TrainingConfig

    config = TrainingConfig()
    assert config.class_weighting == recipe.DEFAULT_CLASS_WEIGHTING == "balanced"
    assert config.max_class_weight == recipe.DEFAULT_MAX_CLASS_WEIGHT == 20.0
    assert config.augment is recipe.DEFAULT_AUGMENT is True
    assert config.augment_any_angle is recipe.DEFAULT_AUGMENT_ANY_ANGLE
    assert config.augment_regrid_share == recipe.DEFAULT_AUGMENT_REGRID_SHARE
    assert config.augment_die_noise is recipe.DEFAULT_AUGMENT_DIE_NOISE
    assert (config.r, config.attention, config.norm, config.head) == (
        recipe.DEFAULT_R,
        recipe.DEFAULT_ATTENTION,
        recipe.DEFAULT_NORM,
        recipe.DEFAULT_HEAD,
    )


def test_harness_defaults_are_the_recipes():
    from experiments import harness

    train = harness.TrainConfig()
    assert train.max_class_weight == recipe.DEFAULT_MAX_CLASS_WEIGHT and train.augment is recipe.DEFAULT_AUGMENT


@pytest.mark.parametrize("max_weight", [20.0, 5.0, 1.5])
def test_trainer_and_harness_give_the_same_class_weights(max_weight):
    from components import trainer
    from components.config import TrainingConfig
    from experiments import harness

    labels = np.array([2] * 700 + [0] * 200 + [1] * 95 + [3] * 5)
    expected = class_weights(labels, 5, max_weight=max_weight)
    via_trainer = trainer.class_weights(labels, 5, TrainingConfig(max_class_weight=max_weight))
    via_harness = harness.class_weights(labels, 5, harness.TrainConfig(max_class_weight=max_weight))
    np.testing.assert_array_equal(via_trainer, expected)
    np.testing.assert_array_equal(via_harness, expected)
    # 1000 / (4 * n_c), clipped; class 4 is absent.
    np.testing.assert_allclose(
        expected, np.clip([1000 / 800, 1000 / 380, 1000 / 2800, 1000 / 20, 1.0], 1 / max_weight, max_weight), rtol=1e-6
    )
    ones = trainer.class_weights(labels, 5, TrainingConfig(class_weighting="none"))
    np.testing.assert_array_equal(ones, np.ones(5, np.float32))


@pytest.mark.parametrize("augment", [True, False])
def test_trainer_and_harness_build_the_same_augmentation(augment):
    from components.config import TrainingConfig
    from experiments import harness

    config = TrainingConfig(augment=augment)
    # The Trainer trains with its configuration's augment_config(), which is the library's.
    assert config.augment_config() == harness.augmentation(harness.TrainConfig(augment=augment))
    for changes in ({"augment_any_angle": True}, {"augment_die_noise": False}, {"augment_regrid_share": 0.7}):
        changed = TrainingConfig(augment=augment, **changes)
        assert changed.augment_config() == augment_config(
            augment, changed.augment_any_angle, changed.augment_regrid_share, changed.augment_die_noise
        )


@pytest.mark.parametrize("model", ["spanet", "ghostnet", "mobilenet_v2", "mobilenet_v3", "resnet50_gc"])
def test_trainer_and_harness_pass_the_same_builder_arguments(model, monkeypatch):
    """Each builder gets the same keyword arguments from the Trainer's build_classifier and from the
    harness (for the recipe's default options), and they are model_options' (the builders are recorded, not run)."""
    import spanet
    from components import trainer
    from components.config import ImageConfig, TrainingConfig
    from experiments import harness

    calls = []

    class Built:
        def count_params(self):
            return 1234

    def record(name, **kwargs):
        calls.append((name, kwargs))
        return Built()

    monkeypatch.setattr(trainer, "build_model", record)
    monkeypatch.setattr(spanet, "build_model", record)  # the harness imports it from spanet when it builds

    # The harness feeds the area-averaged map only (no footprint-maximum or support channel): compare at
    # one channel.
    image = ImageConfig(height=32, width=32, max_channel=False, support_channel=False)
    trainer.build_classifier(3, image, TrainingConfig(model=model, width=0.25))
    assert harness.count_parameters(harness.ModelSpec(label=model, model=model, width=0.25), 3, (32, 32, 1)) == 1234
    (via_trainer_name, via_trainer), (via_harness_name, via_harness) = calls
    assert via_trainer_name == via_harness_name == model
    assert via_trainer == via_harness
    assert {k: v for k, v in via_trainer.items() if k not in ("num_classes", "input_shape", "width")} == model_options(
        model
    )
    assert via_trainer["input_shape"] == (32, 32, 1) and via_trainer["width"] == 0.25


def test_harness_options_override_the_recipes():
    from experiments import ablation, harness, r_sweep

    base = ablation.specs(0.25)[0]
    assert dict(base.options) == model_options("spanet")
    spec = r_sweep.specs(0.25)[0]
    assert harness.builder_options(spec) == {**model_options("spanet"), "r": 0.06, "block_depth_multiplier": 1}
    assert harness.builder_options(spec, block_depth_multiplier=None)["block_depth_multiplier"] is None
    assert harness.builder_options(harness.ModelSpec(label="m", model="mobilenet_v2")) == {}


def test_build_classifier_passes_extra_options_to_the_builder():
    """The serving benchmark builds the published code's variant of the served architecture this way."""
    from components.config import ImageConfig, TrainingConfig
    from components.trainer import build_classifier
    from spanet.layers import SelfAttention

    image = ImageConfig(height=32, width=32, max_channel=False, support_channel=False)
    config = TrainingConfig(width=0.25)
    served = build_classifier(3, image, config)
    published = build_classifier(3, image, config, reference_attention=True, fused=False)
    assert published.count_params() == served.count_params()
    attention = [layer for layer in published.submodules if isinstance(layer, SelfAttention)]
    assert attention and all(layer.reference_softmax and not layer.fused for layer in attention)
    assert not any(layer.reference_softmax for layer in served.submodules if isinstance(layer, SelfAttention))
