"""Training on a feature map kept as its channel parts: a concat's pieces that are never joined.

A self-proliferation module makes its maps in two pieces, the intrinsic maps and their cheap copies,
and the layers after it in a block's middle act per channel (BatchNorm, ReLU, depthwise convolution,
the attention gate) or are 1x1 convolutions, which are the sum of one product per piece. So the
pieces go through the middle of a block side by side and meet only in the next 1x1 product: no concat
in the forward pass and no split in the backward pass (8 % of a training step's op time), and with
one thread per op (``spanet.threads``) the second core works on one piece while the first works on
the other. Every function here computes what its layer computes on the joined map, to float
rounding (tests/spanet/test_parts.py, in float32 and float64).

Measured on 2 cores, worker processes, 7 interleaved rounds each, the same hour (2026-12-05), SP&A-Net
training at batch 64: 350 -> 395 img/s with the parts; 353 -> 410 once each weight is cut by one split
(a slice per part had cost its gradient a zero-filled copy of the whole weight); 356 -> 425 with the
ReLU form below; 355 -> 427 with the projection's parts normalised before they are joined.
"""

from __future__ import annotations

from typing import List, Sequence

from spanet._keras import keras, tf
from spanet.layers.pointwise import matmul_over_positions


def channel_counts(parts: Sequence[tf.Tensor]) -> List[int]:
    """The channels each part holds of the joined map."""
    return [int(part.shape[-1]) for part in parts]


def split_like(tensor: tf.Tensor, parts: Sequence[tf.Tensor], per_channel: int = 1, axis: int = -1) -> List[tf.Tensor]:
    """``tensor`` cut along ``axis`` into the parts' shares (``per_channel`` entries per channel).

    One split op, whose gradient is one concat: a slice per part would cost each part's gradient a
    zero-filled tensor of the whole weight's size and an add."""
    if len(parts) == 1:
        return [tensor]
    return tf.split(tensor, [per_channel * count for count in channel_counts(parts)], axis=axis)


def supports_parts() -> bool:
    """Whether training may run on parts here: not inside a multi-replica step, where Keras's BatchNorm
    also handles a replica's empty share of a batch."""
    return tf.distribute.get_strategy().num_replicas_in_sync == 1


def batchnorm_parts(
    bn: keras.layers.BatchNormalization, parts: Sequence[tf.Tensor], relu: bool = False
) -> List[tf.Tensor]:
    """``bn(concat(parts), training=True)`` (then ReLU), one BatchNorm per part, and the layer's moving
    statistics updated as Keras's training step updates them: its fused kernel where the layer uses it
    (float32), its moments and ``batch_normalization`` otherwise (float64)."""
    # Keras 2 keeps its fused kernel's Bessel-corrected variances unless a layer of its legacy tests asks
    # otherwise (_bessels_correction_test_only): the parts reproduce the plain layer only.
    legacy_bessel = not getattr(bn, "_bessels_correction_test_only", True)
    if bn.renorm or bn.virtual_batch_size is not None or bn.adjustment is not None or bn.synchronized or legacy_bessel:
        raise ValueError(f"BatchNorm {bn.name!r} on channel parts supports only plain per-batch statistics")
    outputs, means, variances = [], [], []
    with tf.name_scope(bn.name):
        moving_mean, moving_variance = tf.convert_to_tensor(bn.moving_mean), tf.convert_to_tensor(bn.moving_variance)
        dtype, channels = moving_mean.dtype, int(moving_mean.shape[0])
        normalise = _fused_part if bn.fused else _moments_part
        gammas = split_like(bn.gamma if bn.scale else tf.ones([channels], dtype), parts)
        betas = split_like(bn.beta if bn.center else tf.zeros([channels], dtype), parts)
        for part, gamma, beta, mean, variance in zip(
            parts, gammas, betas, split_like(moving_mean, parts), split_like(moving_variance, parts)
        ):
            output, mean, variance = normalise(bn, part, gamma, beta, mean, variance)
            outputs.append(relu_after_batchnorm(output) if relu else output)
            means.append(mean)
            variances.append(variance)
        mean, variance = tf.concat(means, axis=0), tf.concat(variances, axis=0)
        if _kernel_averages(bn):
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(variance)
        else:
            # As Keras rounds it: 1 - momentum in Python (or in the momentum variable's float32), then cast.
            decay = tf.cast(tf.convert_to_tensor(1.0 - bn.momentum), dtype)
            bn.moving_mean.assign_sub((moving_mean - mean) * decay)
            bn.moving_variance.assign_sub((moving_variance - variance) * decay)
    return outputs


def relu_after_batchnorm(outputs: tf.Tensor) -> tf.Tensor:
    """ReLU of a training BatchNorm's output, in the form oneDNN runs fastest for its channel count.

    TensorFlow fuses BatchNorm and a following ``Relu`` into one oneDNN kernel, which for channel counts
    that are no multiple of 8 is oneDNN's generic C++ implementation: 2.2 against 0.9 ms for 64x16x16x36
    forward, 3.1 against 1.6 ms with the backward pass. A leaky ReLU of slope 0 computes the same values
    and is not fused, so BatchNorm keeps its vectorised kernel."""
    if int(outputs.shape[-1]) % 8:
        return tf.nn.leaky_relu(outputs, alpha=0.0)
    return tf.nn.relu(outputs)


def _kernel_averages(bn: keras.layers.BatchNormalization) -> bool:
    """Whether the BatchNorm kernel itself returns the new moving statistics, as Keras has it do in its fused
    training step when the momentum is a number; a tensor momentum (BatchNorm re-estimation steers it
    through a variable) has the kernel return the batch's statistics, averaged in afterwards."""
    return bool(bn.fused) and isinstance(bn.momentum, (float, int))


def _fused_part(bn, part, gamma, beta, moving_mean, moving_variance):
    """One part through Keras's fused training BatchNorm: (output, new or batch mean, variance)."""
    return tf.compat.v1.nn.fused_batch_norm(
        part,
        gamma,
        beta,
        mean=moving_mean,
        variance=moving_variance,
        epsilon=bn.epsilon,
        is_training=True,
        exponential_avg_factor=1.0 - bn.momentum if _kernel_averages(bn) else None,
    )


def _moments_part(bn, part, gamma, beta, moving_mean, moving_variance):
    """One part through Keras's unfused training BatchNorm: (output, batch mean, batch variance)."""
    mean, variance = tf.nn.moments(tf.cast(part, moving_mean.dtype), [0, 1, 2])
    output = tf.nn.batch_normalization(
        part,
        tf.cast(mean, part.dtype),
        tf.cast(variance, part.dtype),
        tf.cast(beta, part.dtype),
        tf.cast(gamma, part.dtype),
        bn.epsilon,
    )
    return output, mean, variance


def depthwise_parts(conv: keras.layers.DepthwiseConv2D, parts: Sequence[tf.Tensor], training=None) -> List[tf.Tensor]:
    """A depthwise convolution (:class:`SmallMapDepthwiseConv2D`) of ``concat(parts)``, part by part."""
    with tf.name_scope(conv.name):
        kernels = split_like(conv.depthwise_kernel, parts, axis=2)
        biases = split_like(conv.bias, parts, conv.depth_multiplier) if conv.use_bias else [None] * len(parts)
        return [conv.convolve(part, training, kernel, bias) for part, kernel, bias in zip(parts, kernels, biases)]


def pointwise_of_parts(conv: keras.layers.Conv2D, parts: Sequence[tf.Tensor]) -> tf.Tensor:
    """A 1x1, stride-1 convolution of ``concat(parts)``: the sum of each part's product with its rows."""
    with tf.name_scope(conv.name):
        kernel = conv.kernel
        matrix = tf.reshape(kernel, [int(kernel.shape[2]), int(kernel.shape[3])])
        products = [matmul_over_positions(part, rows) for part, rows in zip(parts, split_like(matrix, parts, axis=0))]
        outputs = tf.add_n(products) if len(products) > 1 else products[0]
        if conv.use_bias:
            outputs = tf.nn.bias_add(outputs, conv.bias)
        if conv.activation is not None:
            outputs = conv.activation(outputs)
        return outputs
