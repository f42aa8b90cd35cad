"""Die-level augmentation: any rotation, mirror, other grids and die noise keep a wafer map a wafer map."""

import numpy as np
import pytest
import tensorflow as tf

from spanet.augment import AugmentConfig, augment_wafer_map, die_noise, dihedral, resample
from spanet.data.convention import die_map_to_image
from spanet.data.generator import generate_die_maps, wafer_mask

LEVELS = {0, 128, 255}


def _maps(count=12, shape=(30, 44), seed=0):
    hot = np.zeros((count, 8), bool)
    hot[np.arange(count), np.arange(count) % 8] = True
    return [die_map_to_image(m) for m in generate_die_maps(hot, shape, np.random.default_rng(seed))]


def test_augmented_maps_keep_die_levels_and_off_wafer_zero():
    tf.random.set_seed(0)
    harsh = AugmentConfig(rotate=True, resample_share=1.0, grid_scale=(0.6, 1.6))  # every path, at any angle
    for image in _maps():
        for config in (harsh, AugmentConfig()):
            out = augment_wafer_map(tf.constant(image[..., None]), config).numpy()[..., 0]
            assert set(np.unique(out)) <= LEVELS
            # No die off the output grid's wafer ellipse, and the wafer is still mostly dies.
            assert (out[~wafer_mask(*out.shape)] == 0).all()
            assert (out[wafer_mask(*out.shape)] > 0).mean() > 0.9


def test_resample_changes_grid_and_keeps_the_pattern_share():
    image = _maps(1, (40, 40))[0]
    out = resample(tf.constant(image[..., None]), 25, 60, tf.constant(0.7), tf.constant(True)).numpy()[..., 0]
    assert out.shape == (25, 60)
    fail_share = lambda m: (m == 255).sum() / max((m > 0).sum(), 1)  # noqa: E731
    assert abs(fail_share(out) - fail_share(image)) < 0.05


def test_quarter_turn_with_mirror_is_exact_on_a_square_grid():
    image = _maps(1, (32, 32))[0][..., None]
    out = resample(tf.constant(image), 32, 32, tf.constant(np.pi / 2, tf.float32), tf.constant(False)).numpy()
    assert np.array_equal(out[..., 0], np.rot90(image[..., 0], k=1)) or np.array_equal(
        out[..., 0], np.rot90(image[..., 0], k=-1)
    )
    mirrored = resample(tf.constant(image), 32, 32, tf.constant(0.0), tf.constant(True)).numpy()
    assert np.array_equal(mirrored[..., 0], image[:, ::-1, 0])


def test_die_noise_flips_only_pass_and_fail_dies_at_about_the_rate():
    tf.random.set_seed(1)
    image = np.full((200, 200, 1), 128, np.uint8)
    image[:20] = 0
    out = die_noise(tf.constant(image), tf.constant(0.1), tf.constant(0.0)).numpy()
    assert (out[:20] == 0).all()
    assert 0.08 < (out[20:] == 255).mean() < 0.12


def test_rgb_images_are_resampled_without_die_noise():
    rgb = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    out = augment_wafer_map(tf.constant(rgb), AugmentConfig(resample_share=0.0)).numpy()
    assert out.shape == (20, 30, 3)
    assert set(map(tuple, out.reshape(-1, 3))) <= set(map(tuple, rgb.reshape(-1, 3))) | {(0, 0, 0)}


def test_grey_photographs_get_neither_the_wafer_ellipse_nor_die_noise():
    tf.random.set_seed(2)
    photo = np.random.default_rng(1).integers(1, 256, size=(40, 50, 1), dtype=np.uint8)  # grey levels, not die levels
    photo[0, 0] = 128  # some pixels happen to sit on a die level
    harsh = AugmentConfig(resample_share=1.0, grid_scale=(1.2, 1.4), max_pass_to_fail=0.5, max_fail_to_pass=0.5)
    out = augment_wafer_map(tf.constant(photo), harsh).numpy()
    assert out.shape[0] > 40 and (out > 0).all()  # regridded, corners kept
    assert set(np.unique(out)) <= set(np.unique(photo))  # nearest resampling only, no level flipped in
    same = augment_wafer_map(tf.constant(photo), AugmentConfig(resample_share=0.0, max_pass_to_fail=0.5)).numpy()
    assert np.array_equal(same, photo)


def test_default_regrids_never_drop_dies_and_quarter_turns_are_exact():
    tf.random.set_seed(3)
    image = _maps(1, (30, 30))[0][..., None]
    config = AugmentConfig(max_pass_to_fail=0.0, max_fail_to_pass=0.0)
    for _ in range(8):
        out = augment_wafer_map(tf.constant(image), config).numpy()[..., 0]
        assert out.shape[0] >= 30 and out.shape[1] >= 30
        if out.shape == (30, 30):
            orientations = [np.rot90(v, k) for v in (image[..., 0], image[::-1, :, 0]) for k in range(4)]
            assert any(np.array_equal(out, o) for o in orientations)
        assert (out == 255).sum() >= (image == 255).sum()  # up-sampling only repeats dies


def test_dihedral_gives_each_image_one_of_its_eight_orientations():
    tf.random.set_seed(5)
    images = np.random.default_rng(0).integers(0, 3, size=(64, 6, 6, 1)).astype(np.float32)
    out = dihedral(tf.constant(images)).numpy()
    seen = set()
    for before, after in zip(images[..., 0], out[..., 0]):
        orientations = [np.rot90(v, k) for v in (before, before[:, ::-1]) for k in range(4)]
        matches = [i for i, o in enumerate(orientations) if np.array_equal(after, o)]
        assert matches
        seen.add(matches[0])
    assert len(seen) >= 6  # drawn per image, not one orientation for the whole batch


def test_orientations_are_the_exact_mirrors_and_quarter_turns():
    from spanet.augment import orientations_of

    image = tf.reshape(tf.range(9, dtype=tf.float32), [1, 3, 3, 1])
    views = orientations_of(image, 8).numpy()[..., 0]
    expected = {tuple(np.rot90(np.arange(9).reshape(3, 3), k).ravel()) for k in range(4)}
    expected |= {tuple(np.rot90(np.arange(9).reshape(3, 3).T, k).ravel()) for k in range(4)}
    assert {tuple(v.ravel().astype(int)) for v in views} == expected and len(views) == 8
    assert orientations_of(tf.zeros([2, 4, 6, 1]), 4).shape == (8, 4, 6, 1)
    with pytest.raises(ValueError, match="8 orientations need square images; got 4x6"):
        orientations_of(tf.zeros([2, 4, 6, 1]), 8)
    with pytest.raises(ValueError, match="orientations must be one of"):
        orientations_of(image, 3)


def test_averaging_over_orientations_makes_a_model_exactly_invariant():
    from spanet.augment import mean_over_orientations

    rng = np.random.default_rng(0)
    images = tf.constant(rng.random([3, 8, 8, 1]), tf.float32)
    model = tf.keras.Sequential([tf.keras.layers.Conv2D(4, 3), tf.keras.layers.Flatten(), tf.keras.layers.Dense(5)])
    model.build([None, 8, 8, 1])
    turned = tf.image.rot90(tf.image.flip_left_right(images), 1)
    np.testing.assert_allclose(
        mean_over_orientations(model, images, 8), mean_over_orientations(model, turned, 8), atol=1e-5
    )
    assert not np.allclose(model(images), model(turned), atol=1e-3)  # the model alone is not invariant
    np.testing.assert_allclose(mean_over_orientations(model, images, 1), model(images), atol=1e-6)
