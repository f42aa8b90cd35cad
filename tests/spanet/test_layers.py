"""The SP&A-Net layers: shapes, the paper's arithmetic, and the reference-code behaviours."""

import numpy as np
import pytest

from spanet._keras import tf
from spanet.layers import CosineClassifier, ScaledSoftmax, SelfAttention, SelfProliferation, SPABlock, hard_sigmoid
from spanet.layers.proliferation import intrinsic_channels, proliferation_multiplier


@pytest.mark.parametrize(
    "filters, ratio, intrinsic, multiplier",
    [(16, 0.5, 8, 1), (16, 1.0, 16, 1), (100, 0.13, 13, 7), (160, 0.06, 10, 16), (40, 0.63, 26, 1), (7, 0.5, 4, 1)],
)
def test_channel_arithmetic(filters, ratio, intrinsic, multiplier):
    assert intrinsic_channels(filters, ratio) == intrinsic
    assert proliferation_multiplier(ratio) == multiplier


@pytest.mark.parametrize("ratio", [0.06, 0.13, 0.25, 0.4, 0.5, 0.63, 0.83, 1.0])
@pytest.mark.parametrize("filters", [7, 16, 24])
def test_self_proliferation_any_ratio_gives_exact_filters(filters, ratio):
    layer = SelfProliferation(filters, ratio)
    out = layer(tf.random.normal([2, 9, 9, 5]))
    assert out.shape == (2, 9, 9, filters)


def test_ratio_one_is_a_plain_convolution():
    layer = SelfProliferation(12, 1.0)
    x = tf.random.normal([2, 6, 6, 3])
    out = layer(x)
    assert layer.cheap is None
    assert len(layer.trainable_weights) == 1
    expected = tf.nn.conv2d(x, layer.intrinsic.kernel, 1, "SAME")
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_proliferated_maps_are_depthwise_copies_of_intrinsic_maps():
    layer = SelfProliferation(10, 0.5)
    x = tf.random.normal([1, 5, 5, 4])
    out = layer(x).numpy()
    intrinsic = tf.nn.conv2d(x, layer.intrinsic.kernel, 1, "SAME")
    cheap = tf.nn.depthwise_conv2d(intrinsic, layer.cheap.depthwise_kernel, [1, 1, 1, 1], "SAME")
    np.testing.assert_allclose(out[..., :5], intrinsic.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[..., 5:], cheap.numpy(), rtol=1e-5, atol=1e-5)


def test_no_weights_for_sliced_away_channels():
    # r = 0.25 on 10 filters: 3 intrinsic, 7 proliferated with multiplier 3 -> only 3 sources needed.
    layer = SelfProliferation(10, 0.25)
    layer.build((None, 4, 4, 2))
    assert layer.num_intrinsic == 3 and layer.num_proliferated == 7
    assert layer.cheap.depthwise_kernel.shape == (3, 3, 3, 3)
    # r = 0.13 on 20: 3 intrinsic, 17 proliferated, multiplier 7 -> 3 sources, 21 maps cut to 17.
    layer = SelfProliferation(20, 0.13)
    layer.build((None, 4, 4, 2))
    assert layer.cheap.depthwise_kernel.shape == (3, 3, 3, 7)


def _attention_reference(x, layer, reference_softmax=False):
    """NumPy evaluation of the attention block from its weights."""
    context_kernel = layer.context.kernel.numpy()[0, 0, :, 0]
    down = layer.down.kernel.numpy()[0, 0]
    up = layer.up.kernel.numpy()[0, 0]
    up_bias = layer.up.bias.numpy()
    gamma, beta = layer.normalization.gamma.numpy(), layer.normalization.beta.numpy()
    b, h, w, c = x.shape
    if reference_softmax:
        context = x  # softmax over one channel is 1 everywhere: no pooling
    else:
        logits = (x @ context_kernel).reshape(b, h * w)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        context = np.einsum("bn,bnc->bc", weights, x.reshape(b, h * w, c))[:, None, None, :]
    hidden = context @ down
    mean = hidden.mean(axis=-1, keepdims=True)
    var = hidden.var(axis=-1, keepdims=True)
    hidden = (hidden - mean) / np.sqrt(var + 1e-5) * gamma + beta
    hidden = np.maximum(hidden, 0)
    gate = np.clip((hidden @ up + up_bias + 3.0) / 6.0, 0.0, 1.0)
    return x * gate


@pytest.mark.parametrize("reference_softmax", [False, True])
def test_attention_matches_the_paper_formula(reference_softmax):
    layer = SelfAttention(reduction=4, norm="layer", reference_softmax=reference_softmax)
    x = np.random.RandomState(0).normal(size=(2, 5, 6, 16)).astype(np.float32)
    out = layer(x).numpy()
    np.testing.assert_allclose(out, _attention_reference(x, layer, reference_softmax), rtol=1e-4, atol=1e-4)


def test_attention_pools_over_positions_but_reference_does_not():
    x = np.random.RandomState(1).normal(size=(1, 4, 4, 8)).astype(np.float32)
    for reference, channel_gate in [(False, True), (True, False)]:
        layer = SelfAttention(reduction=2, reference_softmax=reference)
        out = layer(x).numpy()
        gate = out / x
        # The paper's attention makes one gate per channel, shared by every position.
        spread = gate.reshape(16, 8).std(axis=0).max()
        assert (spread < 1e-4) == channel_gate


@pytest.mark.parametrize("norm", ["layer", "batch", "group"])
def test_attention_normalisations(norm):
    layer = SelfAttention(reduction=4, norm=norm)
    out = layer(tf.random.normal([4, 3, 3, 24]), training=True)
    assert out.shape == (4, 3, 3, 24)
    assert type(layer.normalization).__name__.lower().startswith(norm)


def test_hard_sigmoid_is_piecewise_linear():
    x = tf.constant([-4.0, -3.0, 0.0, 1.5, 3.0, 5.0])
    np.testing.assert_allclose(hard_sigmoid(x).numpy(), [0, 0, 0.5, 0.75, 1, 1], atol=1e-6)


@pytest.mark.parametrize("strides, attention", [(1, True), (2, True), (2, False)])
def test_spa_block_shapes_and_residual(strides, attention):
    block = SPABlock(filters=24, expansion=48, kernel_size=3, strides=strides, attention=attention)
    out = block(tf.random.normal([2, 8, 8, 16]))
    assert out.shape == (2, 8 // strides, 8 // strides, 24)
    assert (block.self_attention is not None) == attention
    assert (block.strided_dw is not None) == (strides > 1)


def test_cosine_classifier_outputs_cosines_and_softmax_is_calibratable():
    layer = CosineClassifier(3)
    x = tf.random.normal([5, 7]) * 100.0
    cos = layer(x).numpy()
    assert cos.min() >= -1.0 - 1e-5 and cos.max() <= 1.0 + 1e-5
    w = layer.kernel.numpy()
    expected = (x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0))
    np.testing.assert_allclose(cos, expected, rtol=1e-5, atol=1e-5)
    probabilities = ScaledSoftmax(10.0)(cos).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SelfProliferation(8, 0.0), "ratio must be a number in (0, 1]"),
        (lambda: SelfProliferation(8, 1.5), "ratio must be a number in (0, 1]"),
        (lambda: SelfAttention(norm="instance"), "norm must be one of 'layer', 'batch', 'group'"),
        (lambda: SelfAttention(fusion="concat"), "fusion must be one of 'gate', 'add'"),
        (lambda: SPABlock(0, 16), "filters must be an integer >= 1"),
        (lambda: CosineClassifier(1), "num_classes must be an integer >= 2"),
        (lambda: ScaledSoftmax(0.0), "scale must be a number > 0"),
    ],
)
def test_bad_layer_arguments_name_the_parameter(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value)


def test_cosine_classifier_survives_huge_activations():
    # An untrained network's BatchNorm statistics can push activations past 1e19, whose
    # square overflows float32; the cosine must still be finite and correct.
    layer = CosineClassifier(3)
    x = np.array([[3e34, -1e34, 0.0, 5e33]], np.float32)
    cos = layer(x).numpy()
    w = layer.kernel.numpy().astype(np.float64)
    x64 = x.astype(np.float64)
    expected = (x64 / np.linalg.norm(x64)) @ (w / np.linalg.norm(w, axis=0))
    np.testing.assert_allclose(cos, expected, rtol=1e-5, atol=1e-6)
