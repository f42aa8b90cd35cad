"""Training on channel parts (``spanet.layers.parts``) computes what the layers compute on the joined map.

Each function is compared with its Keras layer on ``concat(parts)``: outputs, the gradients of the
inputs and the weights, and BatchNorm's moving statistics, in float32 (oneDNN's fused BatchNorm) and
float64 (Keras's moments), with a number and a variable as BatchNorm's momentum.
"""

import runpy
from pathlib import Path

import numpy as np
import pytest

from spanet._keras import keras, tf
from spanet.layers import SelfProliferation, SmallMapDepthwiseConv2D, SPABlock
from spanet.layers.attention import SelfAttention
from spanet.layers.parts import (
    batchnorm_parts,
    channel_counts,
    depthwise_parts,
    pointwise_of_parts,
    relu_after_batchnorm,
    split_like,
    supports_parts,
)
from spanet.layers.pointwise import PointwiseConv2D


def _parts(shape, counts, dtype=tf.float32, seed=0):
    rng = np.random.RandomState(seed)
    return [tf.constant(rng.normal(0.5, 2.0, (*shape, count)), dtype) for count in counts]


def _assert_close(actual, expected, dtype, scale=1.0):
    tolerance = 1e-10 if dtype == tf.float64 else 2e-5
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tolerance, atol=tolerance * scale)


def _batchnorm(channels, dtype, momentum):
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, dtype=dtype)
    bn.build((None, 4, 4, channels))
    rng = np.random.RandomState(7)
    bn.set_weights(
        [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.5, channels)]
        + [rng.normal(0, 0.5, channels), rng.uniform(0.5, 2.0, channels)]
    )
    if momentum == "variable":  # as BatchNorm re-estimation steers it
        bn.momentum = tf.Variable(0.75, dtype=tf.float32)
    return bn


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("momentum", ["number", "variable"])
@pytest.mark.parametrize("relu, counts", [(False, (8, 16)), (True, (12, 8)), (True, (5,))])
def test_batchnorm_on_parts_equals_batchnorm_on_the_joined_map(dtype, momentum, relu, counts):
    parts = _parts((6, 4, 4), counts, dtype)
    on_parts, joined = _batchnorm(sum(counts), dtype, momentum), _batchnorm(sum(counts), dtype, momentum)
    assert on_parts.fused == (dtype == tf.float32)
    weights = (3.0 + tf.range(sum(counts), dtype=dtype)) / 10.0  # a loss that weighs every channel differently

    def step(function, bn):
        with tf.GradientTape() as tape:
            tape.watch(parts)
            outputs = function(bn)
            loss = tf.reduce_sum(tf.square(outputs) * weights)
        return outputs, tape.gradient(loss, [*parts, bn.gamma, bn.beta])

    outputs, gradients = step(lambda bn: tf.concat(batchnorm_parts(bn, parts, relu), axis=-1), on_parts)
    activation = tf.nn.relu if relu else tf.identity
    expected, expected_gradients = step(lambda bn: activation(bn(tf.concat(parts, -1), training=True)), joined)
    _assert_close(outputs, expected, dtype)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        _assert_close(gradient, expected_gradient, dtype, scale=float(np.abs(expected_gradient).max()))
    for statistic, expected_statistic in zip(on_parts.non_trainable_weights, joined.non_trainable_weights):
        _assert_close(statistic.numpy(), expected_statistic.numpy(), dtype)
    # The statistics moved: the comparison above is not between two untouched copies.
    assert not np.allclose(on_parts.moving_mean.numpy(), _batchnorm(sum(counts), dtype, momentum).moving_mean.numpy())


def test_batchnorm_on_parts_refuses_settings_it_does_not_reproduce():
    bn = keras.layers.BatchNormalization(renorm=True)
    bn.build((None, 2, 2, 4))
    with pytest.raises(ValueError, match="plain per-batch statistics"):
        batchnorm_parts(bn, _parts((2, 2, 2), (4,)))


def test_depthwise_parts_need_channels_last():
    conv = SmallMapDepthwiseConv2D(3, padding="same", data_format="channels_first")
    conv.build((None, 4, 6, 6))
    with pytest.raises(ValueError, match="channel parts needs data_format='channels_last'"):
        conv.convolve(tf.zeros([1, 4, 6, 6]), True, conv.depthwise_kernel)


def test_relu_after_batchnorm_avoids_the_fused_kernel_only_where_it_is_slow():
    for channels, op in ((36, "LeakyRelu"), (40, "Relu"), (48, "Relu")):
        x = tf.constant(np.linspace(-2.0, 2.0, 2 * channels).reshape(1, 1, 2, channels), tf.float32)
        np.testing.assert_array_equal(relu_after_batchnorm(x).numpy(), tf.nn.relu(x).numpy())
        graph = tf.function(relu_after_batchnorm).get_concrete_function(tf.TensorSpec(x.shape)).graph
        assert op in [operation.type for operation in graph.get_operations()]


def test_split_like_cuts_a_weight_into_the_parts_shares():
    parts = _parts((1, 1, 1), (2, 3))
    assert channel_counts(parts) == [2, 3]
    first, second = split_like(tf.range(10), parts, per_channel=2)
    assert first.numpy().tolist() == [0, 1, 2, 3] and second.numpy().tolist() == [4, 5, 6, 7, 8, 9]
    (whole,) = split_like(tf.range(3), parts[1:])
    assert whole.numpy().tolist() == [0, 1, 2]


@pytest.mark.parametrize("use_bias", [False, True])
def test_pointwise_of_parts_is_the_convolution_of_the_joined_map(use_bias):
    parts = _parts((3, 5, 4), (6, 10))
    conv = PointwiseConv2D(7, use_bias=use_bias, bias_initializer="random_normal")
    conv.build((None, 5, 4, 16))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(parts)
        outputs = pointwise_of_parts(conv, parts)
        expected = conv(tf.concat(parts, axis=-1))
        loss, expected_loss = tf.reduce_sum(outputs**2), tf.reduce_sum(expected**2)
    _assert_close(outputs, expected, tf.float32, scale=10.0)
    for a, b in zip(tape.gradient(loss, [*parts, conv.kernel]), tape.gradient(expected_loss, [*parts, conv.kernel])):
        _assert_close(a, b, tf.float32, scale=float(np.abs(b).max()))


@pytest.mark.parametrize("size, stride, multiplier", [(8, 1, 1), (8, 2, 2), (4, 2, 1), (2, 1, 3)])
def test_depthwise_of_parts_is_the_convolution_of_the_joined_map(size, stride, multiplier):
    # 8x8 runs oneDNN's kernel; 4x4 with stride 2 and 2x2 the matrix form of small maps.
    parts = _parts((3, size, size), (4, 6))
    conv = SmallMapDepthwiseConv2D(3, stride, padding="same", depth_multiplier=multiplier, use_bias=True)
    conv.build((None, size, size, 10))
    conv.bias.assign(tf.random.normal(conv.bias.shape))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(parts)
        outputs = tf.concat(depthwise_parts(conv, parts, training=True), axis=-1)
        expected = conv(tf.concat(parts, axis=-1), training=True)
        loss, expected_loss = tf.reduce_sum(outputs**2), tf.reduce_sum(expected**2)
    _assert_close(outputs, expected, tf.float32, scale=10.0)
    variables = [*parts, conv.depthwise_kernel, conv.bias]
    for a, b in zip(tape.gradient(loss, variables), tape.gradient(expected_loss, variables)):
        _assert_close(a, b, tf.float32, scale=float(np.abs(b).max()))


@pytest.mark.parametrize("fusion", ["gate", "add"])
def test_attention_on_parts_equals_attention_on_the_joined_map(fusion):
    parts = _parts((3, 4, 4), (8, 12))
    attention = SelfAttention(reduction=4, fusion=fusion)
    attention.build((None, 4, 4, 20))
    assert attention.accepts_parts()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(parts)
        outputs = tf.concat(attention.call_on_parts(parts, training=True), axis=-1)
        expected = attention(tf.concat(parts, axis=-1), training=True)
        loss, expected_loss = tf.reduce_sum(outputs**2), tf.reduce_sum(expected**2)
    _assert_close(outputs, expected, tf.float32, scale=10.0)
    variables = [*parts, *attention.trainable_variables]
    for a, b in zip(tape.gradient(loss, variables), tape.gradient(expected_loss, variables)):
        _assert_close(a, b, tf.float32, scale=float(np.abs(b).max()))
    reference = SelfAttention(reference_softmax=True)
    reference.build((None, 4, 4, 20))
    assert not reference.accepts_parts()


def _block_step(block, x, dtype):
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = block(x, training=True)
        loss = tf.reduce_sum(tf.square(outputs) * (1.0 + tf.range(outputs.shape[-1], dtype=dtype) / 10.0))
    return outputs, tape.gradient(loss, [x, *block.trainable_variables])


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("strides, size", [(1, 8), (2, 8), (2, 4)])
def test_block_trains_on_parts_as_it_trains_on_the_joined_maps(dtype, strides, size):
    x = tf.constant(np.random.RandomState(4).normal(size=(4, size, size, 16)), dtype)
    keras.backend.set_floatx(dtype.name)  # the block's layers take the default float type
    try:
        on_parts, joined = (SPABlock(24, 72, kernel_size=5, strides=strides) for _ in range(2))
        for block in (on_parts, joined):
            block.build(x.shape)
        joined.set_weights(on_parts.get_weights())
        joined._trains_on_parts = lambda training: False  # the block's whole-map path, as before parts
        assert on_parts._trains_on_parts(True) and not on_parts._trains_on_parts(False)
        outputs, gradients = _block_step(on_parts, x, dtype)
        expected, expected_gradients = _block_step(joined, x, dtype)
    finally:
        keras.backend.set_floatx("float32")
    _assert_close(outputs, expected, dtype, scale=float(np.abs(expected).max()))
    largest = max(float(np.abs(g).max()) for g in expected_gradients)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        # Gradients zero in exact arithmetic (betas before a BatchNorm) differ by rounding: an absolute floor.
        _assert_close(gradient, expected_gradient, dtype, scale=largest)
    for a, b in zip(on_parts.non_trainable_weights, joined.non_trainable_weights):
        _assert_close(a.numpy(), b.numpy(), dtype, scale=float(np.abs(b.numpy()).max()))


def test_training_graph_joins_only_the_blocks_output():
    block = SPABlock(24, 48, strides=2)
    spec = tf.TensorSpec([2, 8, 8, 16])
    block.build(spec.shape)
    graph = tf.function(lambda x: block(x, training=True), autograph=False).get_concrete_function(spec).graph
    joins = [op.name for op in graph.get_operations() if op.type == "ConcatV2" and op.outputs[0].shape.rank == 4]
    # One concat of feature maps: the projection's two parts, after their BatchNorm, before the shortcut.
    assert len(joins) == 1 and joins[0].endswith("/concat"), joins
    # The whole-map path joins the expansion too (and the projection inside its module).
    block._trains_on_parts = lambda training: False
    graph = tf.function(lambda x: block(x, training=True), autograph=False).get_concrete_function(spec).graph
    assert len([op for op in graph.get_operations() if op.type == "ConcatV2" and op.outputs[0].shape.rank == 4]) == 2


# Run by tests/two_replicas.py on two logical CPUs.
def parts_on_two_replicas() -> dict:
    """Whether each replica of a two-replica step, and a plain step, would train on parts."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    seen = []

    def replica_step():
        seen.append(supports_parts())
        return tf.constant(0)

    strategy.run(tf.function(replica_step))
    return {"replicas": seen, "default": supports_parts()}


def test_a_multi_replica_step_trains_on_the_joined_maps():
    # Keras's BatchNorm handles a replica's empty share of a batch, which the parts do not reproduce.
    run_on_two_replicas = runpy.run_path(str(Path(__file__).parents[1] / "two_replicas.py"))["run_on_two_replicas"]
    assert run_on_two_replicas(__file__, "parts_on_two_replicas") == {"replicas": [False, False], "default": True}


def test_self_proliferation_parts_are_the_module_output_cut_in_two():
    module = SelfProliferation(12, 0.5)
    x = tf.random.normal([2, 4, 4, 6])
    module.build(x.shape)
    bn = keras.layers.BatchNormalization()
    bn.build((None, 4, 4, 12))
    parts = module.batchnormed_parts(x, bn)
    assert channel_counts(parts) == [6, 6]
    expected = keras.layers.BatchNormalization()
    expected.build((None, 4, 4, 12))
    np.testing.assert_allclose(
        tf.concat(parts, -1).numpy(), expected(module(x, training=True), training=True).numpy(), atol=1e-5
    )
