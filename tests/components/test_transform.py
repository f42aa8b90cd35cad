"""Transform's preprocessing_fn on known inputs, through real tf.Transform on Beam."""

import numpy as np
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components.config import IMAGE_XF, IS_DEFECT_XF, LABEL_XF, ImageConfig
from components.transform import decode_and_resize, preprocessing_fn, supported
from spanet.data.imageio import encode_png


def _custom_config(**image):
    return {"image": {"height": 8, "width": 8, "channels": 1, **image}}


def test_wafer_map_pixels_survive_resizing():
    # A 2x2 wafer map: off-wafer, pass / fail, fail -> each die becomes a 4x4 block at 8x8.
    png = encode_png(np.array([[0, 128], [255, 255]], np.uint8))
    image = decode_and_resize(tf.constant([png]), ImageConfig(height=8, width=8)).numpy()[0, ..., 0]
    np.testing.assert_allclose(image[:4, :4], 0.0)
    np.testing.assert_allclose(image[:4, 4:], 128 / 255, atol=1e-6)
    np.testing.assert_allclose(image[4:, :], 1.0)


def test_rgb_jpeg_becomes_grey_of_the_configured_size():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 255
    jpeg = tf.io.encode_jpeg(rgb, quality=100).numpy()
    image = decode_and_resize(
        tf.constant([jpeg]), ImageConfig(height=16, width=16, max_channel=True, support_channel=False)
    ).numpy()
    assert image.shape == (1, 16, 16, 2)  # the area-averaged and the footprint-maximum copy
    assert 0.25 < image.mean() < 0.35  # pure red in grey: 0.2989 (ITU-R 601 weights)
    rgb_model = decode_and_resize(
        tf.constant([jpeg]), ImageConfig(height=16, width=16, channels=3, max_channel=False, support_channel=False)
    ).numpy()
    assert rgb_model.shape == (1, 16, 16, 3)
    # Each extra copy repeats every image channel.
    assert decode_and_resize(tf.constant([jpeg]), ImageConfig(height=16, width=16, channels=3)).numpy().shape == (
        1,
        16,
        16,
        9,
    )


def test_a_one_die_scratch_on_a_big_grid_keeps_its_level_in_the_max_channel():
    wafer = np.full((150, 120), 128, np.uint8)
    wafer[:, 61] = 255  # one die wide: area averaging to 64 dims it
    image = decode_and_resize(tf.constant([encode_png(wafer)]), ImageConfig(max_channel=True)).numpy()[0]
    area, peak = image[..., 0], image[..., 1]
    assert area.max() < 0.8  # (255 + 128) / 2 at best, on a ~2-die footprint
    np.testing.assert_allclose(peak.max(axis=1), 1.0)  # every row of the line at full fail level
    assert (peak == 1.0).sum(axis=1).max() <= 2 and np.isclose(peak.min(), 128 / 255)
    # A map no bigger than the input is enlarged alike in both channels.
    small = decode_and_resize(
        tf.constant([encode_png(np.array([[0, 128], [255, 255]], np.uint8))]),
        ImageConfig(height=8, width=8, max_channel=True),
    ).numpy()[0]
    np.testing.assert_allclose(small[..., 0], small[..., 1], atol=1e-6)


def test_supported_keeps_lines_and_blobs_and_drops_scattered_dies():
    image = np.full((7, 9, 1), 0.5, np.float32)
    image[3, 1:8] = 1.0  # a line of seven dies: the five inside have two neighbours on it
    image[0, 0] = image[6, 8] = 1.0  # lone fails
    image[5:7, 0:2] = 1.0  # a 2 x 2 blob: every die has three failing neighbours
    out = supported(tf.constant(image)).numpy()[..., 0]
    assert (out[3, 2:7] == 1.0).all() and out[3, 1] == out[3, 7] == 0.5  # the ends have one neighbour each
    assert out[0, 0] == out[6, 8] == 0.5  # lone fails drop to the pass level
    assert (out[5:7, 0:2] == 1.0).all()
    np.testing.assert_array_equal(out[image[..., 0] == 0.5], 0.5)  # nothing is raised
    # Off-image counts as 0: a corner pass die with all its neighbours on the image keeps its level.
    assert supported(tf.zeros((3, 3, 2))).shape == (3, 3, 2)


def test_a_thin_scratch_stands_out_of_background_noise_in_the_support_channel():
    rng = np.random.default_rng(0)
    wafer = np.where(rng.random((120, 120)) < 0.06, 255, 128).astype(np.uint8)  # 6 % scattered failures
    line = np.arange(20, 80)
    wafer[line, line + 10] = 255  # a one-die diagonal scratch
    image = decode_and_resize(tf.constant([encode_png(wafer)]), ImageConfig()).numpy()[0]
    peak, support = image[..., 1], image[..., 2]
    assert (peak == 1.0).mean() > 0.15  # the footprint maximum lights a fifth of the pixels
    assert (support == 1.0).mean() < 0.03  # the support channel only the line and a few chance pairs
    rows = (line * 64 // 120)[2:-2]
    assert (support[rows].max(axis=1) == 1.0).all()  # every row along the scratch is lit


def test_preprocessing_fn_through_tft_beam(tmp_path):
    maps = [
        np.array([[0, 255], [128, 128]], np.uint8),
        np.array([[255, 255], [255, 255]], np.uint8),
        np.array([[0, 128], [128, 0]], np.uint8),
    ]
    raw = [{"image": [encode_png(m)], "label": [label]} for m, label in zip(maps, [b"Center", b"Center", b"none"])]
    spec = {"image": tf.io.FixedLenFeature([1], tf.string), "label": tf.io.FixedLenFeature([1], tf.string)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (transformed, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, _custom_config())
        )
    assert [row[LABEL_XF] for row in transformed] == [0, 0, 1]  # vocabulary by frequency: Center, none
    assert [row[IS_DEFECT_XF] for row in transformed] == [1.0, 1.0, 0.0]
    assert "patterns_xf" not in transformed[0]  # multi-label mode only
    # The default input: the area-averaged map and its footprint maximum (equal for a map smaller than
    # 8 x 8), and the support channel, where the lone fail die drops to the pass level.
    first = np.asarray(transformed[0][IMAGE_XF]).reshape(8, 8, 3)
    np.testing.assert_allclose(first[:4, 4:, :2], 1.0)
    np.testing.assert_allclose(first[:4, 4:, 2], 128 / 255, atol=1e-6)
    np.testing.assert_allclose(first[4:, :], 128 / 255, atol=1e-6)


def test_multilabel_mode_adds_the_multi_hot_patterns_of_each_label(tmp_path):
    from components.config import PATTERNS_XF

    blank = encode_png(np.full((4, 4), 128, np.uint8))
    labels = [b"Center+Edge-Ring", b"Edge-Ring", b"none", b"Center"]
    raw = [{"image": [blank], "label": [label]} for label in labels]
    spec = {"image": tf.io.FixedLenFeature([1], tf.string), "label": tf.io.FixedLenFeature([1], tf.string)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    config = {"image": {"height": 8, "width": 8, "patterns": ["Center", "Edge-Ring"]}}
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (transformed, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, config)
        )
    assert [list(row[PATTERNS_XF]) for row in transformed] == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    assert [row[IS_DEFECT_XF] for row in transformed] == [1.0, 1.0, 0.0, 1.0]
