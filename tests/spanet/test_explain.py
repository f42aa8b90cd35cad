"""Explanation maps (spanet.explain): SmoothGrad and Grad-CAM on models whose answer is known, the
layer Grad-CAM reads, and the map brought back to the wafer's own grid and drawn over it."""

import numpy as np
import pytest

from spanet._keras import keras, tf
from spanet.explain import cam_layer, grad_cam, grad_cam_model, overlay, peak, smooth_saliency, to_shape
from spanet.models.spanet import build_spanet


def _bright_detector() -> keras.Model:
    """Class 1's score is the mean brightness (through a 1x1 feature map), class 0's its negative."""
    inputs = keras.Input((32, 32, 1))
    features = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(2, use_bias=False, name="logits")(pooled)
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([np.array([[-1.0, 1.0]], np.float32)])
    return model


def _blob_image() -> np.ndarray:
    image = np.zeros((1, 32, 32, 1), np.float32)
    image[0, 20:25, 4:9, 0] = 1.0
    return image


def _thresholded_detector() -> keras.Model:
    """Class 1's score is the mean of the pixels above 0.5: only the blob's pixels move it."""
    inputs = keras.Input((32, 32, 1))
    bright = keras.layers.Conv2D(
        1, 1, activation="relu", kernel_initializer="ones", bias_initializer=keras.initializers.Constant(-0.5)
    )(inputs)
    logits = keras.layers.Dense(2, use_bias=False, name="logits")(keras.layers.GlobalAveragePooling2D()(bright))
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([np.array([[-1.0, 1.0]], np.float32)])
    return model


def test_smoothgrad_points_at_the_blob_and_is_reproducible():
    model = _thresholded_detector()
    first = smooth_saliency(model, tf.constant(_blob_image()), tf.constant([1])).numpy()
    assert first.shape == (1, 32, 32) and first.max() == pytest.approx(1.0) and first.min() >= 0.0
    row, col = peak(first[0])
    assert 20 <= row < 25 and 4 <= col < 9
    blob = np.zeros((32, 32), bool)
    blob[20:25, 4:9] = True
    assert first[0][blob].mean() > 5 * first[0][~blob].mean()
    again = smooth_saliency(model, tf.constant(_blob_image()), tf.constant([1])).numpy()
    np.testing.assert_array_equal(first, again)


def test_the_map_of_the_class_the_blob_supports_peaks_on_the_blob():
    cam = grad_cam(grad_cam_model(_bright_detector()), tf.constant(_blob_image()), tf.constant([1])).numpy()
    assert cam.shape == (1, 32, 32)
    assert cam.max() == pytest.approx(1.0)
    row, col = peak(cam[0])
    assert 20 <= row < 25 and 4 <= col < 9
    assert cam[0, :10, 20:].max() == 0.0  # nothing where the wafer is empty


def test_a_class_with_no_positive_evidence_gets_an_empty_map_not_nan():
    cam = grad_cam(grad_cam_model(_bright_detector()), tf.constant(_blob_image()), tf.constant([0])).numpy()
    assert np.isfinite(cam).all() and cam.max() == 0.0


def test_spanet_maps_have_the_input_size_and_grad_cam_reads_an_eighth_of_it():
    model = build_spanet(num_classes=3, input_shape=(64, 64, 1), width=0.25)
    assert tuple(cam_layer(model).output.shape[1:3]) == (8, 8)
    images, classes = tf.random.uniform((2, 64, 64, 1), seed=1), tf.constant([0, 2])
    for maps in (grad_cam(grad_cam_model(model), images, classes), smooth_saliency(model, images, classes)):
        maps = maps.numpy()
        assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


def test_the_map_is_resized_to_the_wafer_grid_and_drawn_over_it():
    cam = np.zeros((64, 64), np.float32)
    cam[40:48, 8:16] = 1.0
    on_wafer = to_shape(cam, (30, 45))  # a non-square wafer: 30 rows, 45 columns
    assert on_wafer.shape == (30, 45)
    row, col = peak(on_wafer)
    assert 40 / 64 * 30 - 1 <= row <= 48 / 64 * 30 and 8 / 64 * 45 - 1 <= col <= 16 / 64 * 45
    wafer = np.full((30, 45), 128, np.uint8)
    drawn = overlay(wafer, on_wafer)
    assert drawn.shape == (30, 45, 3) and drawn.dtype == np.uint8
    assert (drawn[0, 0] == 128).all()  # no evidence: the wafer shows through unchanged
    assert drawn[row, col, 0] > drawn[row, col, 2]  # the peak is drawn red
    with pytest.raises(ValueError, match="differs"):
        overlay(wafer, cam)
