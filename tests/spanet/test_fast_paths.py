"""The CPU fast paths compute what the plain layers compute, with the same weights.

``fused=True`` (the default) evaluates 1x1 convolutions as matrix products, folds
BatchNorm into the convolution before it in inference, splits the concat gradient
in one op, trains depthwise convolutions onto maps of at most four positions as
a batched matrix product and trains a block's middle on channel parts (tests/spanet/test_parts.py);
``fused=False`` runs the layers one by one as the published code does.
"""

import numpy as np
import pytest

from spanet import CircleLoss, build_spanet
from spanet._keras import keras, tf
from spanet.layers import PointwiseConv2D, SelfProliferation, SmallMapDepthwiseConv2D, SPABlock
from spanet.layers.depthwise import tap_table
from spanet.layers.folding import batchnorm_scale_shift


def _randomise_batchnorm(model, seed=0):
    """Give every BatchNorm non-trivial statistics so that folding has something to fold."""
    rng = np.random.RandomState(seed)
    for variable in model.variables:
        name = variable.name
        if "moving_mean" in name or "beta" in name:
            variable.assign(rng.normal(0.0, 0.3, variable.shape))
        elif "moving_variance" in name or "gamma" in name:
            variable.assign(rng.uniform(0.5, 2.0, variable.shape))


@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (3, 1, 1, 16)])
@pytest.mark.parametrize("use_bias", [False, True])
def test_pointwise_conv_equals_conv2d(shape, use_bias):
    x = tf.random.normal(shape)
    pointwise = PointwiseConv2D(4, use_bias=use_bias, bias_initializer="random_normal")
    conv = keras.layers.Conv2D(4, 1, use_bias=use_bias)
    pointwise.build(x.shape)
    conv.build(x.shape)
    conv.set_weights(pointwise.get_weights())
    assert [w.shape for w in pointwise.weights] == [w.shape for w in conv.weights]
    np.testing.assert_allclose(pointwise(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-5)


def test_pointwise_conv_accepts_conv2d_configs_and_refuses_other_kernels():
    config = keras.layers.Conv2D(8, 1, name="c").get_config()
    layer = PointwiseConv2D.from_config(config)
    assert layer.filters == 8 and layer.name == "c"
    with pytest.raises(ValueError, match="kernel_size"):
        PointwiseConv2D(8, kernel_size=3)
    with pytest.raises(ValueError, match="strides"):
        PointwiseConv2D(8, strides=2)
    with pytest.raises(ValueError, match="dilation_rate"):
        PointwiseConv2D(8, dilation_rate=(2, 2))
    with pytest.raises(ValueError, match="groups=1"):
        PointwiseConv2D(8, groups=2)
    with pytest.raises(ValueError, match="channels_last"):
        PointwiseConv2D(8, data_format="channels_first")


def test_tap_table_links_positions_through_kernel_taps():
    # 2x2 map, 3x3 kernel, 'same' padding: output (0, 0) sees input (0, 0) through the centre tap (4).
    table, out_h, out_w = tap_table(2, 2, 3, 1)
    assert (out_h, out_w) == (2, 2)
    assert table[0].tolist() == [4, 5, 7, 8]
    assert table[3].tolist() == [0, 1, 3, 4]
    # Stride 2 on a 2x2 map with a 5x5 kernel: one output position; TF pads 1 above and 2 below.
    table, out_h, out_w = tap_table(2, 2, 5, 2)
    assert (out_h, out_w) == (1, 1) and table[0].tolist() == [6, 7, 11, 12]


@pytest.mark.parametrize(
    "height, width, kernel, stride, multiplier",
    [
        (2, 2, 3, 1, 1),
        (2, 2, 5, 1, 3),
        (2, 1, 3, 2, 2),
        (1, 1, 3, 1, 1),
        (2, 2, 5, 2, 1),
        (4, 4, 5, 2, 1),
        (4, 3, 3, 2, 2),
    ],
)
def test_small_map_depthwise_trains_like_the_native_kernel(height, width, kernel, stride, multiplier):
    layer = SmallMapDepthwiseConv2D(kernel, stride, padding="same", depth_multiplier=multiplier)
    x = tf.random.normal([3, height, width, 4])
    layer.build(x.shape)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        dense = layer(x, training=True)
        native = layer(x, training=False)
        dense_loss, native_loss = tf.reduce_sum(dense**2), tf.reduce_sum(native**2)
    np.testing.assert_allclose(dense.numpy(), native.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(
        tape.gradient(dense_loss, [x, layer.depthwise_kernel]), tape.gradient(native_loss, [x, layer.depthwise_kernel])
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size, stride, native", [(4, 1, True), (8, 2, True), (4, 2, False), (2, 1, False)])
def test_small_map_depthwise_keeps_the_native_kernel_where_the_output_is_larger(size, stride, native):
    layer = SmallMapDepthwiseConv2D(3, stride, padding="same")
    spec = tf.TensorSpec([1, size, size, 2])
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(spec).graph
    assert any(op.type == "DepthwiseConv2dNative" for op in graph.get_operations()) == native


def test_batchnorm_scale_shift_is_the_inference_affine_map():
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    x = tf.random.normal([4, 3, 3, 5])
    bn.build(x.shape)
    bn.set_weights([np.full(5, 2.0), np.full(5, 0.5), np.arange(5.0), np.full(5, 4.0)])
    scale, shift = batchnorm_scale_shift(bn)
    np.testing.assert_allclose((x * scale + shift).numpy(), bn(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
def test_fused_block_equals_the_layer_by_layer_block(strides):
    x = tf.random.normal([4, 8, 8, 16])
    fused = SPABlock(24, 48, strides=strides, fused=True)
    plain = SPABlock(24, 48, strides=strides, fused=False)
    fused.build(x.shape)
    plain.build(x.shape)
    assert [w.name for w in fused.weights] == [w.name for w in plain.weights]
    rng = np.random.RandomState(1)
    weights = [
        rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name else rng.normal(0, 0.3, w.shape) for w in plain.weights
    ]
    fused.set_weights(weights)
    plain.set_weights(weights)
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "filters, ratio, use_bias",
    [(24, 0.5, False), (24, 0.5, True), (23, 0.5, False), (20, 0.3, True), (21, 0.26, False), (12, 1.0, True)],
)
@pytest.mark.parametrize("relu", [False, True])
def test_proliferation_with_its_batchnorm_folded_equals_the_layers_one_by_one(filters, ratio, use_bias, relu):
    # Odd counts and small ratios: the cheap convolution reads only some intrinsic maps (num_sources) or
    # makes maps that are cut away, where a misaligned scale would show.
    x = tf.random.normal([3, 6, 5, 10])
    fused = SelfProliferation(filters, ratio, use_bias=use_bias, fused=True)
    plain = SelfProliferation(filters, ratio, use_bias=use_bias, fused=False)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    for layer in (fused, plain):
        layer.build(x.shape)
    bn.build(fused.compute_output_shape(x.shape))
    rng = np.random.RandomState(2)
    plain.set_weights([rng.normal(0, 0.5, w.shape) for w in plain.weights])
    fused.set_weights(plain.get_weights())
    bn.set_weights(
        [rng.uniform(0.5, 2.0, filters), rng.normal(0, 0.5, filters)]
        + [rng.normal(0, 0.5, filters), rng.uniform(0.5, 2.0, filters)]
    )
    expected = bn(plain(x, training=False), training=False)
    expected = tf.nn.relu(expected) if relu else expected
    outputs = fused(x, training=False, batchnorm=bn, relu=relu)
    np.testing.assert_allclose(outputs.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    # In training the BatchNorm layer itself runs (on the batch's statistics).
    trained = fused(x, training=True, batchnorm=bn, relu=relu)
    expected = bn(plain(x, training=True), training=True)
    np.testing.assert_allclose(trained.numpy(), (tf.nn.relu(expected) if relu else expected).numpy(), atol=1e-5)


def _fused_and_plain(**kwargs):
    fused, plain = build_spanet(**kwargs), build_spanet(fused=False, **kwargs)
    _randomise_batchnorm(fused)
    plain.set_weights(fused.get_weights())
    return fused, plain


def test_fused_network_has_the_same_weights_and_outputs():
    fused, plain = _fused_and_plain(num_classes=9, input_shape=(64, 64, 1))
    assert fused.count_params() == plain.count_params() == 5_123_664
    assert [w.name for w in fused.weights] == [w.name for w in plain.weights]
    x = np.random.RandomState(2).uniform(size=(8, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    np.testing.assert_allclose(fused(x, training=True).numpy(), plain(x, training=True).numpy(), atol=1e-4)


def test_fused_network_has_the_same_gradients():
    # In float64, so that rounding (which BatchNorm on 2x2 maps amplifies) cannot hide a real difference.
    keras.backend.set_floatx("float64")
    try:
        fused, plain = _fused_and_plain(num_classes=4, input_shape=(32, 32, 1), width=0.5)
        x = np.random.RandomState(3).uniform(size=(8, 32, 32, 1))
        y = np.arange(8) % 4

        def gradients(model):
            with tf.GradientTape() as tape:
                loss = CircleLoss()(y, model(x, training=True))
            return loss, tape.gradient(loss, model.trainable_variables)

        (fused_loss, fused_grads), (plain_loss, plain_grads) = gradients(fused), gradients(plain)
    finally:
        keras.backend.set_floatx("float32")
    assert fused_grads[0].dtype == tf.float64
    # The blocks trained on channel parts (spanet.layers.parts), whose moving statistics match too.
    assert all(layer._trains_on_parts(True) for layer in fused.layers if isinstance(layer, SPABlock))
    for a, b in zip(fused.non_trainable_weights, plain.non_trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-12, err_msg=a.name)
    np.testing.assert_allclose(fused_loss.numpy(), plain_loss.numpy(), rtol=1e-10)
    largest = max(float(np.abs(g.numpy()).max()) for g in plain_grads)
    for variable, a, b in zip(fused.trainable_variables, fused_grads, plain_grads):
        # Gradients that are zero in exact arithmetic (LayerNorm betas) come out ~1e-9: an absolute floor.
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-9 * largest, err_msg=variable.name)


def test_fused_graphs_use_matrix_products_and_fold_batchnorm():
    model = build_spanet(num_classes=3, input_shape=(16, 16, 1), width=0.25)
    spec = tf.TensorSpec([2, 16, 16, 1])
    inference = tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(spec).graph
    training = tf.function(lambda x: model(x, training=True), autograph=False).get_concrete_function(spec).graph
    inference_ops = [op.type for op in inference.get_operations()]
    assert "FusedBatchNormV3" in [op.type for op in training.get_operations()]
    # Folded: every BatchNorm in the blocks (those after a concatenation into the proliferation module);
    # only the stem's, head's and embedding's remain, outside the blocks.
    assert inference_ops.count("FusedBatchNormV3") == 3
    assert inference_ops.count("Conv2D") == 1  # the 3x3 stem; every 1x1 convolution is a MatMul
    # The one-op concat gradient (an IdentityN per join) only where a gradient is taken: in training one
    # per block, where the projection's parts meet (the expansion's are never joined: spanet.layers.parts).
    assert [op.type for op in training.get_operations()].count("IdentityN") == 16
    assert "IdentityN" not in inference_ops


def test_fused_flag_round_trips_through_the_config():
    layer = SelfProliferation(8, 0.5, fused=False)
    clone = SelfProliferation.from_config(layer.get_config())
    assert clone.fused is False
    block = SPABlock.from_config(SPABlock(16, 32).get_config())
    assert block.fused is True
