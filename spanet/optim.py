"""Optimisers and learning-rate schedules of the paper's ablation.

Optimisers: NAG (SGD with Nesterov momentum, the paper's choice), Adam, plain SGD.
Schedules: cosine annealing (the paper's choice, a serialisable schedule) and
reduce-on-plateau (a callback that lowers a constant rate when a metric stalls).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Dict, List, Tuple, Union

from spanet._keras import keras, register, tf
from spanet.validation import check_choice, check_positive, check_positive_int

OPTIMIZERS = ("nag", "adam", "sgd")
SCHEDULES = ("cosine", "plateau", "constant")


@register
class CosineAnnealing(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing from ``initial_learning_rate`` to ``final_learning_rate`` over ``decay_steps``.

    lr(t) = final + (initial - final) * (1 + cos(pi * min(t, T) / T)) / 2,
    with an optional linear warm-up over the first ``warmup_steps``.
    """

    def __init__(
        self,
        initial_learning_rate: float = 1e-2,
        final_learning_rate: float = 1e-4,
        decay_steps: int = 1000,
        warmup_steps: int = 0,
        name: str = "cosine_annealing",
    ):
        super().__init__()
        self.initial_learning_rate = check_positive("initial_learning_rate", initial_learning_rate)
        if not 0.0 <= float(final_learning_rate) <= self.initial_learning_rate:
            raise ValueError(
                f"final_learning_rate must be in [0, initial_learning_rate={self.initial_learning_rate}]; "
                f"got {final_learning_rate!r}"
            )
        self.final_learning_rate = float(final_learning_rate)
        self.decay_steps = check_positive_int("decay_steps", decay_steps)
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0; got {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(step, float(self.decay_steps)) / float(self.decay_steps)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        lr = self.final_learning_rate + (self.initial_learning_rate - self.final_learning_rate) * cosine
        if self.warmup_steps > 0:
            lr = lr * tf.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
        return lr

    def get_config(self) -> Dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "final_learning_rate": self.final_learning_rate,
            "decay_steps": self.decay_steps,
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }


LearningRate = Union[float, keras.optimizers.schedules.LearningRateSchedule]

#: Per traced graph, per :class:`FusedSGD`: the rates of the step being traced (``FusedSGD._step_rates``).
_STEP_RATES: "weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary]" = weakref.WeakKeyDictionary()


@register
class FusedSGD(keras.optimizers.SGD):
    """Keras's SGD (momentum, Nesterov, decoupled weight decay) on TensorFlow's fused update kernels.

    Same arithmetic, variables and config as ``keras.optimizers.SGD``; a dense step is one
    ``ResourceApplyKerasMomentum`` per variable and the decay one ``ResourceApplyGradientDescent``,
    where the stock optimiser runs about a dozen small ops per variable (SP&A-Net has 342).
    Under a ``tf.distribute`` strategy both run on every replica's copy of a variable, with the
    replicas' summed gradient: the same steps as on one device (tests/spanet/test_distribute.py).
    """

    def _step_rates(self, dtype: tf.DType) -> Dict[str, tf.Tensor]:
        """This step's learning rate, momentum and decay rate in ``dtype``, read once per traced graph.

        Read per variable, the rates cost six small ops for each of SP&A-Net's 342 variables: about
        2,000 of the training graph's 12,600 ops, traced and optimised before the first step and run
        at every step. In eager mode (a new step each call) they are read afresh.
        """
        if not tf.inside_function():
            return self._read_rates(dtype)
        # Kept beside the graph, not on the optimiser: tensors in its attributes would be tracked.
        per_optimizer = _STEP_RATES.setdefault(tf.compat.v1.get_default_graph(), weakref.WeakKeyDictionary())
        rates = per_optimizer.setdefault(self, {})
        if dtype not in rates:
            rates[dtype] = self._read_rates(dtype)
        return rates[dtype]

    def _read_rates(self, dtype: tf.DType) -> Dict[str, tf.Tensor]:
        # Read here, once: a variable (a schedule's current rate) handed to each op would be read by each.
        learning_rate = tf.cast(tf.convert_to_tensor(self.learning_rate), dtype)
        decay = None if self.weight_decay is None else learning_rate * tf.cast(self.weight_decay, dtype)
        return {"learning_rate": learning_rate, "momentum": tf.cast(self.momentum, dtype), "decay": decay}

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices):  # sparse (embedding) gradients: the stock path
            return super().update_step(gradient, variable)
        momentum = self.momentums[self._index_dict[self._var_key(variable)]]
        rates = self._step_rates(variable.dtype)
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=momentum.handle,
            lr=rates["learning_rate"],
            grad=gradient,
            momentum=rates["momentum"],
            use_nesterov=self.nesterov,
        )

    def _apply_weight_decay(self, variables):
        """``variable -= learning_rate * weight_decay * variable``, one fused op each, replica by replica."""
        if self.weight_decay is None:
            return

        def decay(variable):
            if self._use_weight_decay(variable):
                tf.raw_ops.ResourceApplyGradientDescent(
                    var=variable.handle,
                    alpha=self._step_rates(variable.dtype)["decay"],
                    delta=tf.raw_ops.ReadVariableOp(resource=variable.handle, dtype=variable.dtype),
                )

        def decay_all(distribution, variables, **kwargs):
            for variable in variables:
                distribution.extended.update(variable, decay, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(decay_all, self._distribution_strategy, variables)


def make_learning_rate(
    schedule: str = "cosine",
    initial_learning_rate: float = 1e-2,
    final_learning_rate: float = 1e-4,
    total_steps: int = 1000,
    warmup_steps: int = 0,
    monitor: str = "val_loss",
    patience: int = 3,
    factor: float = 0.1,
) -> Tuple[LearningRate, List[keras.callbacks.Callback]]:
    """The learning rate to hand the optimiser and the callbacks the schedule needs.

    ``cosine`` returns a :class:`CosineAnnealing` schedule; ``plateau`` returns the
    initial rate and a ``ReduceLROnPlateau`` callback; ``constant`` a fixed rate.
    """
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "cosine":
        return CosineAnnealing(initial_learning_rate, final_learning_rate, total_steps, warmup_steps), []
    rate = check_positive("initial_learning_rate", initial_learning_rate)
    if schedule == "plateau":
        callback = keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=factor, patience=patience, min_lr=final_learning_rate
        )
        return rate, [callback]
    return rate, []


def make_optimizer(
    name: str = "nag", learning_rate: LearningRate = 1e-2, momentum: float = 0.9, weight_decay: float = 0.0
) -> keras.optimizers.Optimizer:
    """NAG (SGD + Nesterov momentum), Adam or plain SGD, on any rate or schedule.

    ``weight_decay`` (decoupled, per step) keeps the scale of the weights in front of
    BatchNorm bounded, which Circle Loss's large gradients otherwise inflate.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if float(weight_decay) < 0:
        raise ValueError(f"weight_decay must be a number >= 0; got {weight_decay!r}")
    decay = float(weight_decay) or None
    if name == "nag":
        return FusedSGD(learning_rate=learning_rate, momentum=momentum, nesterov=True, weight_decay=decay)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=decay)
    return FusedSGD(learning_rate=learning_rate, weight_decay=decay)
