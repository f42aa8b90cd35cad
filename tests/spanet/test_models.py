"""SP&A-Net's builder and the baselines: published parameter counts, options, argument errors."""

import numpy as np
import pytest

import spanet
from spanet import build_model, build_spanet
from spanet.layers import SPABlock
from spanet.models import MODEL_BUILDERS, scale_channels


def test_public_surface():
    assert callable(spanet.build_spanet) and callable(spanet.build_model)
    assert spanet.CircleLoss.__name__ == "CircleLoss"


@pytest.mark.parametrize(
    "num_classes, input_shape, expected", [(10, (32, 32, 3), 5_125_232), (9, (64, 64, 1), 5_123_664)]
)
def test_parameter_parity_with_the_published_code(num_classes, input_shape, expected):
    model = build_spanet(num_classes=num_classes, input_shape=input_shape, width=1.0, r=0.5)
    assert model.count_params() == expected


def test_defaults_are_the_papers_network():
    model = build_spanet()
    blocks = [layer for layer in model.layers if isinstance(layer, SPABlock)]
    assert len(blocks) == 16
    assert all(b.attention and b.ratio == 0.5 and b.norm == "layer" for b in blocks)
    assert [b.strides for b in blocks].count(2) == 4
    assert model.input_shape == (None, 64, 64, 1) and model.output_shape == (None, 9)
    assert model.get_layer("embedding_conv").filters == 1280


def test_options_change_the_network():
    base = build_spanet(num_classes=4, input_shape=(32, 32, 1)).count_params()
    assert build_spanet(num_classes=4, input_shape=(32, 32, 1), attention=False).count_params() < base
    assert build_spanet(num_classes=4, input_shape=(32, 32, 1), head="gap").count_params() < base
    assert build_spanet(num_classes=4, input_shape=(32, 32, 1), width=0.5).count_params() < base / 2
    # The reference's block depthwise multiplier ceil(1/r) - 1 grows the network as r shrinks.
    assert build_spanet(num_classes=4, input_shape=(32, 32, 1), r=0.25).count_params() > base
    flags = [i % 2 == 0 for i in range(16)]
    model = build_spanet(num_classes=4, input_shape=(32, 32, 1), attention=flags)
    assert [b.attention for b in model.layers if isinstance(b, SPABlock)] == flags


def test_any_input_shape_and_embedding_output():
    model = build_spanet(num_classes=3, input_shape=(45, 37, 3), width=0.25, embedding_output=True)
    logits, embedding = model(np.zeros((2, 45, 37, 3), np.float32))
    assert logits.shape == (2, 3) and embedding.shape == (2, scale_channels(1280, 0.25))


def test_scale_channels_keeps_the_reference_at_width_one():
    for channels in (16, 24, 40, 48, 72, 80, 112, 120, 160, 184, 200, 240, 480, 672, 960, 1280):
        assert scale_channels(channels, 1.0) == channels
    assert scale_channels(16, 0.5) == 8 and scale_channels(960, 0.5) == 480


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_every_baseline_builds_for_grey_and_rgb(name):
    for shape in [(32, 32, 1), (32, 32, 3)]:
        model = build_model(name, num_classes=5, input_shape=shape, width=0.5 if "mobilenet" in name else 0.25)
        out = model(np.zeros((2,) + shape, np.float32)).numpy()
        assert out.shape == (2, 5)
        assert np.all(np.abs(out) <= 1.0 + 1e-5), "every model outputs cosine logits"


def test_ghostnet_is_spanet_without_attention():
    model = build_model("ghostnet", num_classes=9, input_shape=(64, 64, 1))
    assert not any(b.attention for b in model.layers if isinstance(b, SPABlock))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(r=0.0), "r must be a number in (0, 1]"),
        (dict(r=1.01), "r must be a number in (0, 1]"),
        (dict(width=0), "width must be a number > 0"),
        (dict(width=-1.0), "width must be a number > 0"),
        (dict(num_classes=1), "num_classes must be an integer >= 2"),
        (dict(norm="instance"), "norm must be one of 'layer', 'batch', 'group'"),
        (dict(head="flatten"), "head must be one of 'conv1x1', 'gap'"),
        (dict(input_shape=(64, 64)), "input_shape must be (height, width, channels)"),
        (dict(attention=[True] * 3), "attention must be a bool or a sequence of 16 bools"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(kwargs, message):
    with pytest.raises(ValueError) as error:
        build_spanet(**kwargs)
    assert message in str(error.value)


def test_unknown_baseline_lists_the_allowed_names():
    with pytest.raises(ValueError) as error:
        build_model("vgg16")
    assert "name must be one of" in str(error.value) and "'mobilenet_v3'" in str(error.value)
    with pytest.raises(ValueError, match="width must be a number > 0"):
        build_model("mobilenet_v2", width=0.0)


def test_block_depth_multiplier_follows_the_reference_or_stays_fixed():
    reference = build_spanet(num_classes=4, input_shape=(32, 32, 1), width=0.25, r=0.25)
    fixed = build_spanet(num_classes=4, input_shape=(32, 32, 1), width=0.25, r=0.25, block_depth_multiplier=1)
    assert [b.shortcut_dw.depth_multiplier for b in reference.layers if isinstance(b, SPABlock)] == [3] * 16
    assert [b.shortcut_dw.depth_multiplier for b in fixed.layers if isinstance(b, SPABlock)] == [1] * 16
    assert fixed.count_params() < reference.count_params()
    with pytest.raises(ValueError, match="depth_multiplier must be an integer >= 1"):
        build_spanet(block_depth_multiplier=0)
