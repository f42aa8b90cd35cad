"""Classifier heads for metric learning: cosine logits for Circle Loss, softmax for serving."""

from __future__ import annotations

from typing import Any, Dict

from spanet._keras import keras, register, tf
from spanet.validation import check_positive, check_positive_int


def safe_l2_normalize(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """L2-normalise without overflow: divide by the largest magnitude first.

    ``tf.math.l2_normalize`` squares its input, so activations above ~1e19 (as from an
    untrained network's BatchNorm statistics) overflow float32 to inf and give NaN.
    """
    peak = tf.reduce_max(tf.abs(x), axis=axis, keepdims=True)
    scaled = x / tf.maximum(peak, 1e-30)
    return tf.math.l2_normalize(scaled, axis=axis, epsilon=1e-12)


@register
class CosineClassifier(keras.layers.Layer):
    """Cosine similarities between the L2-normalised embedding and L2-normalised class weights.

    These are the class-level similarities of Circle Loss: each output lies in [-1, 1].
    The layer has no bias, like the published network's last 1x1 convolution.
    """

    def __init__(self, num_classes: int, kernel_initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes, minimum=2)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(int(input_shape[-1]), self.num_classes),
            initializer=self.kernel_initializer,
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        return self._forward(inputs)

    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs):
        embedding = safe_l2_normalize(inputs, axis=-1)
        weights = safe_l2_normalize(self.kernel, axis=0)
        return tf.matmul(embedding, weights)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.num_classes])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@register
class ScaledSoftmax(keras.layers.Layer):
    """Class probabilities from cosine logits: ``softmax(scale * cos)``.

    ``scale`` is a temperature: Circle Loss trains with gamma = 64, and
    :func:`spanet.calibration.fit_temperature` picks the scale that makes the
    probabilities calibrated on held-out data.
    """

    def __init__(self, scale: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = check_positive("scale", scale)

    def call(self, inputs):
        return self._forward(inputs)

    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs):
        return tf.nn.softmax(inputs * self.scale, axis=-1)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(scale=self.scale)
        return config
