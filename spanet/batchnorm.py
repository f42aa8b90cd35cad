"""Precise BatchNorm statistics: re-estimate every BN layer's moving mean and variance after training.

During training the moving averages trail weights that keep changing, and with few
steps (small fab data sets) they never catch up: inference-mode outputs then differ
from what the network learned. Averaging the batch statistics of the final weights
over some training batches (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021)
removes that gap without touching a trained weight.
"""

from __future__ import annotations

from typing import Iterable, List

from spanet._keras import keras, tf


def batchnorm_layers(model: keras.layers.Layer) -> List[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer in the model, nested layers included."""
    return [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]


class BatchNormRecalibrator:
    """Re-estimates a model's BN moving statistics; one traced forward pass, reused on every call."""

    def __init__(self, model: keras.Model):
        self.model = model
        self.layers = batchnorm_layers(model)
        # BN reads its momentum through tf.convert_to_tensor, so a variable can steer a traced graph.
        self.momentum = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="recalibration_momentum")
        # No AutoGraph: the model has no tensor-dependent Python control flow, and converting Keras'
        # own layer code costs tens of seconds on the first call (spanet.tracing).
        self._forward = tf.function(lambda images: model(images, training=True), reduce_retracing=True, autograph=False)

    def _synchronise_replicas(self) -> None:
        """Under a multi-replica strategy, give every replica's copy of the moving statistics their mean.

        Training leaves each replica its own statistics (of its share of the batches); the passes below
        run on whole batches outside the replicas and move every copy by the same amount, so only equal
        copies end equal to the re-estimate, which evaluation under the strategy then reads replica by
        replica (the exported model and cross-replica reads see the mean either way).
        """
        strategy = self.model.distribute_strategy
        if strategy.num_replicas_in_sync < 2:
            return
        with strategy.scope():
            for layer in self.layers:
                for statistic in (layer.moving_mean, layer.moving_variance):
                    statistic.assign(statistic.read_value())  # cross-replica read: the replicas' mean

    def __call__(self, images: Iterable[tf.Tensor], max_batches: int = 50) -> int:
        """Sets each BN layer's moving statistics to the mean of its batch statistics over ``images``.

        Returns the number of batches used; no trainable weight changes.
        """
        if not self.layers:
            return 0
        self._synchronise_replicas()
        saved_momentum = [layer.momentum for layer in self.layers]
        for layer in self.layers:
            layer.momentum = self.momentum
        used = 0
        try:
            for batch in images:
                if used >= max_batches:
                    break
                # momentum k/(k+1) turns the exponential average into the cumulative mean.
                self.momentum.assign(used / (used + 1.0))
                self._forward(batch)
                used += 1
        finally:
            for layer, momentum in zip(self.layers, saved_momentum):
                layer.momentum = momentum
        return used


def recalibrate_batchnorm(model: keras.Model, images: Iterable[tf.Tensor], max_batches: int = 50) -> int:
    """One-off :class:`BatchNormRecalibrator` call: returns the number of batches averaged."""
    return BatchNormRecalibrator(model)(images, max_batches)


class PreciseBatchNormValidation(keras.callbacks.Callback):
    """At each epoch's end: recalibrate BN statistics, then validate, and report ``val_*`` metrics.

    Place it before EarlyStopping, TensorBoard and CSVLogger (they read the ``val_*``
    values it writes) and do not pass ``validation_data`` to ``fit``.
    """

    def __init__(self, train_images: tf.data.Dataset, validation: tf.data.Dataset, batches: int = 20):
        super().__init__()
        self.train_images = train_images
        self.validation = validation
        self.batches = batches
        self._recalibrator = None

    def on_epoch_end(self, epoch, logs=None):
        if self._recalibrator is None:
            self._recalibrator = BatchNormRecalibrator(self.model)
        self._recalibrator(self.train_images, self.batches)
        results = self.model.evaluate(self.validation, verbose=0, return_dict=True)
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in results.items()})
