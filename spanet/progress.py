"""Training progress a person can follow: one line per epoch with its losses, its time and what is left."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Dict, Optional, TextIO

from spanet._keras import keras


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class EpochProgress(keras.callbacks.Callback):
    """Prints ``<prefix>: epoch 3/32: loss 22.13, eval loss 18.16; 4 s, about 1 min 56 s left (at most)``.

    The estimate is the median epoch time so far times the epochs left (early stopping may end sooner);
    the first epoch also builds the graph, so it is left out once there are others.
    """

    def __init__(self, epochs: int, prefix: str = "Trainer", stream: Optional[TextIO] = None):
        super().__init__()
        self.epochs = int(epochs)
        self.prefix = prefix
        self.stream = stream
        self.durations = []
        self._started = 0.0

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(f"{self.prefix}: {text}\n")
        stream.flush()

    def on_train_begin(self, logs: Optional[Dict] = None) -> None:
        self._write(f"training up to {self.epochs} epochs (the first also builds the graph)")

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict] = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Optional[Dict] = None) -> None:
        self.durations.append(time.monotonic() - self._started)
        logs = logs or {}
        # Train before eval, the loss first in each: "loss 2.3, accuracy 0.98, eval loss 0.12, eval accuracy 1".
        order = sorted(
            (k for k in logs if k not in ("lr", "learning_rate")),
            key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss", k),
        )
        values = ", ".join(f"{'eval ' + k[4:] if k.startswith('val_') else k} {logs[k]:.4g}" for k in order)
        typical = statistics.median(self.durations[1:] or self.durations)
        left = self.epochs - (epoch + 1)
        tail = f", about {_duration(typical * left)} left (at most)" if left > 0 else ""
        self._write(f"epoch {epoch + 1}/{self.epochs}: {values}; {_duration(self.durations[-1])}{tail}")
