"""The unknown-input checks: pixel statistics, their envelope, and the familiarity threshold."""

import numpy as np
import tensorflow as tf

from components.transform import decode_and_resize
from components.config import ImageConfig
from spanet.data.generator import generate_wafer_maps
from spanet.data.imageio import encode_png
from spanet.data.probes import unknown_probes
from spanet.ood import familiarity_threshold, fit_envelope, input_statistics, outside_envelope


def _inputs(pngs):
    return decode_and_resize(tf.constant(pngs), ImageConfig(height=32, width=32)).numpy()


def test_statistics_are_shares_and_the_mean():
    images = np.zeros((2, 4, 4, 1), np.float32)
    images[0, :2] = 0.5
    images[1] = 0.2
    stats = input_statistics(images).numpy()
    np.testing.assert_allclose(stats[0], [0.5, 0.0, 0.25])
    np.testing.assert_allclose(stats[1], [0.0, 1.0, 0.2], rtol=1e-6)


def test_the_envelope_of_wafer_maps_holds_new_maps_and_not_the_probes():
    envelope = fit_envelope(
        input_statistics(_inputs([encode_png(r.image) for r in generate_wafer_maps(400, 1)])).numpy()
    )
    fresh = input_statistics(_inputs([encode_png(r.image) for r in generate_wafer_maps(200, 2)]))
    assert outside_envelope(fresh, *envelope).numpy().mean() <= 0.01
    for name in ("noise", "blank", "saturated", "photograph"):
        stats = input_statistics(_inputs(unknown_probes()[name]))
        assert outside_envelope(stats, *envelope).numpy().all(), name


def test_an_empty_envelope_admits_everything():
    low, high = fit_envelope(np.zeros((0, 3)))
    assert not outside_envelope(np.array([[0.0, 1.0, 0.5]]), low, high).numpy().any()


def test_familiarity_threshold_is_conformal():
    values = np.linspace(0.5, 1.0, 999)
    threshold = familiarity_threshold(values, 0.01)
    assert (values < threshold).sum() == 9  # k = floor(0.01 * 1000) = 10: the 10th smallest, 9 below it
    # A new in-distribution value is rejected with probability k / (n + 1) = 1 %: check by simulation.
    rng = np.random.default_rng(0)
    rejected = [rng.random() < familiarity_threshold(rng.random(99), 0.01) for _ in range(4000)]
    assert 0.006 < np.mean(rejected) < 0.014
    assert familiarity_threshold(np.linspace(0, 1, 50), 0.01) == -1.0  # too few wafers: reject nothing
    ties = np.array([0.2] * 150 + [0.9] * 150)
    assert (ties < familiarity_threshold(ties, 0.01)).sum() == 0
    assert familiarity_threshold(np.array([]), 0.01) == -1.0


def test_derived_channels_do_not_widen_the_envelope():
    """The Trainer and the served model take the statistics of the image's own channel: with the footprint
    maximum and support channels counted too, Random maps' envelope (30-60 % fails) took in a map with
    every die failing."""
    maps = generate_wafer_maps(300, 1, class_mix={"Random": 1.0, "Center": 1.0, "none": 1.0}, min_size=26, max_size=64)
    inputs = _inputs([encode_png(r.image) for r in maps])
    assert inputs.shape[-1] == 3  # area average, footprint maximum, support
    all_failing = _inputs(unknown_probes()["all dies failing"])
    image_only = fit_envelope(input_statistics(inputs, channels=1).numpy())
    assert outside_envelope(input_statistics(all_failing, channels=1), *image_only).numpy().all()
    every_channel = fit_envelope(input_statistics(inputs).numpy())
    assert not outside_envelope(input_statistics(all_failing), *every_channel).numpy().any()
    np.testing.assert_allclose(input_statistics(inputs, channels=1), input_statistics(inputs[..., :1]))
