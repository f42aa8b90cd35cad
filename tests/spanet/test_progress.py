"""The Trainer's epoch lines: losses first, the epoch's time, and an estimate of what is left."""

import io

import numpy as np

from spanet._keras import keras
from spanet.progress import EpochProgress


def test_one_line_per_epoch_with_losses_time_and_what_is_left():
    stream = io.StringIO()
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32)
    model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[EpochProgress(3, stream=stream)])
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Trainer: training up to 3 epochs (the first also builds the graph)"
    assert len(lines) == 4
    assert lines[1].startswith("Trainer: epoch 1/3: loss ") and ", mae " in lines[1] and ", eval loss " in lines[1]
    assert lines[1].index("eval loss") < lines[1].index("eval mae") and lines[1].endswith("left (at most)")
    assert lines[3].startswith("Trainer: epoch 3/3: loss ") and "left" not in lines[3]
