"""A short training run: SP&A-Net + Circle Loss + NAG + cosine annealing learns a separable problem."""

import numpy as np

from spanet import CircleLoss, build_spanet, make_learning_rate, make_optimizer
from spanet._keras import tf


def _separable_images(count, seed):
    """Three classes of 32x32 grey images: a bright disc at the centre, a bright edge ring, or noise."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:32, :32]
    radius = np.hypot(yy - 15.5, xx - 15.5)
    labels = rng.randint(0, 3, size=count)
    images = rng.uniform(0, 0.3, size=(count, 32, 32)).astype(np.float32)
    images[labels == 0] += (radius < 7 + rng.uniform(-2, 2, size=((labels == 0).sum(), 1, 1))) * 0.7
    images[labels == 1] += (radius > 12 + rng.uniform(-1, 1, size=((labels == 1).sum(), 1, 1))) * 0.7
    return images[..., None], labels


def test_spanet_with_circle_loss_learns():
    tf.random.set_seed(0)
    x, y = _separable_images(384, seed=0)
    x_val, y_val = _separable_images(150, seed=1)
    model = build_spanet(num_classes=3, input_shape=(32, 32, 1), width=0.25)
    epochs, batch = 6, 32
    rate, callbacks = make_learning_rate("cosine", 5e-2, 1e-4, total_steps=epochs * len(x) // batch)
    model.compile(optimizer=make_optimizer("nag", rate), loss=CircleLoss(), metrics=["accuracy"])
    before = model.evaluate(x_val, y_val, verbose=0)[0]
    history = model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=callbacks, verbose=0)
    loss, accuracy = model.evaluate(x_val, y_val, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert loss < before
    assert accuracy > 0.9, f"accuracy {accuracy:.3f} on a separable 3-class problem (chance 0.33)"
