"""Training-time augmentation for the invariances a wafer map really has, at die level.

A defect pattern means the same at any rotation angle, mirrored, and on another product's die
grid (other size, other aspect ratio); a few dies more or less failing do not change it. So one
nearest-die resampling in *wafer coordinates* (the wafer the unit disc whatever the grid's aspect)
rotates by any angle, mirrors, and moves the map to a grid of another size and aspect ratio;
then die-level noise flips a few pass and fail dies. Nearest-die sampling keeps every value one
of the map's own (off-wafer 0, pass 128, fail 255), and dies sampled from outside the source grid
are off-wafer (0), as is anything outside the new grid's inscribed ellipse. Works on any uint8
image (grey or RGB); the ellipse and die noise apply to grey maps only. Quarter turns and mirrors
are exact and run per image on the resized batch (:func:`dihedral`), where they cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import tensorflow as tf

from spanet.data.classes import FAIL_DIE_LEVEL, OFF_WAFER_LEVEL, PASS_DIE_LEVEL


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and their ranges (each chosen on the cross-recipe stress set)."""

    #: Rotation by any angle and mirroring in the resampling (quarter turns and mirrors always come
    #: from :func:`dihedral`). Off: nearest-die rotation by other angles breaks one-die lines into
    #: dotted ones, and the generated data has patterns at every angle anyway.
    rotate: bool = False
    flip: bool = True
    #: Per-axis grid scale, log-uniform in this range (independent axes change the aspect ratio too).
    #: Never below 1: nearest-die down-sampling drops dies, and a one-die scratch that loses a
    #: quarter of its dies looks like scattered background fails (none maps were then read as
    #: Scratch); coarser grids are in the generated data itself.
    grid_scale: Tuple[float, float] = (1.0, 1.5)
    #: Share of maps that are resampled to another grid at all (the rest keep theirs).
    resample_share: float = 0.3
    #: Die-level noise: pass dies that fail, and fail dies that pass, at rates up to these.
    max_pass_to_fail: float = 0.01
    max_fail_to_pass: float = 0.03
    #: Smallest and largest grid side a resampled map gets.
    min_side: int = 8
    max_side: int = 256


def _wafer_axis(size: tf.Tensor) -> tf.Tensor:
    """Die-centre coordinates along one axis, scaled so that the grid spans [-1, 1]."""
    size_f = tf.cast(size, tf.float32)
    return (tf.range(size_f) - (size_f - 1.0) / 2.0) / (size_f / 2.0)


def resample(
    image: tf.Tensor, out_rows: tf.Tensor, out_cols: tf.Tensor, angle: tf.Tensor, mirror: tf.Tensor
) -> tf.Tensor:
    """Nearest-die resampling of ``image`` (H, W, C) onto an out_rows x out_cols grid, rotated by
    ``angle`` (radians) and mirrored left-right when ``mirror``; outside the source grid is 0."""
    shape = tf.shape(image)
    rows, cols = shape[0], shape[1]
    v, u = tf.meshgrid(_wafer_axis(out_rows), _wafer_axis(out_cols), indexing="ij")
    u = tf.where(mirror, -u, u)
    cos, sin = tf.cos(angle), tf.sin(angle)
    us, vs = cos * u + sin * v, -sin * u + cos * v
    rows_f, cols_f = tf.cast(rows, tf.float32), tf.cast(cols, tf.float32)
    col = tf.cast(tf.round(us * cols_f / 2.0 + (cols_f - 1.0) / 2.0), tf.int32)
    row = tf.cast(tf.round(vs * rows_f / 2.0 + (rows_f - 1.0) / 2.0), tf.int32)
    inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
    index = tf.stack([tf.clip_by_value(row, 0, rows - 1), tf.clip_by_value(col, 0, cols - 1)], axis=-1)
    gathered = tf.gather_nd(image, index)
    return tf.where(inside[..., None], gathered, tf.zeros_like(gathered))


def die_noise(image: tf.Tensor, pass_to_fail: tf.Tensor, fail_to_pass: tf.Tensor) -> tf.Tensor:
    """Flips pass dies (128) to fail (255) and fail dies to pass at the given rates (grey maps)."""
    draw = tf.random.uniform(tf.shape(image))
    passing, failing = tf.equal(image, PASS_DIE_LEVEL), tf.equal(image, FAIL_DIE_LEVEL)
    image = tf.where(passing & (draw < pass_to_fail), tf.constant(FAIL_DIE_LEVEL, image.dtype), image)
    return tf.where(failing & (draw < fail_to_pass), tf.constant(PASS_DIE_LEVEL, image.dtype), image)


def augment_wafer_map(image: tf.Tensor, config: AugmentConfig = AugmentConfig()) -> tf.Tensor:
    """One random die-level augmentation of a uint8 image (H, W, C): resampling (any angle and mirror
    when ``config.rotate``; another grid for ``resample_share`` of maps), then die noise.

    Maps that are neither rotated nor regridded skip the resampling (it is the costly part). Quarter
    turns and mirrors are exact and cheap on the resized batch: :func:`dihedral`.
    """
    shape = tf.shape(image)
    rows, cols = shape[0], shape[1]
    low, high = config.grid_scale
    regrid = tf.random.uniform([]) < config.resample_share
    scales = tf.where(regrid, tf.exp(tf.random.uniform([2], tf.math.log(low), tf.math.log(high))), tf.ones([2]))

    def scaled(size: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
        new = tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32)
        return tf.clip_by_value(new, tf.minimum(size, config.min_side), tf.maximum(size, config.max_side))

    # Only a grey image whose every pixel is a die level (off / pass / fail) is a wafer map: grey
    # inspection photographs are resampled like RGB ones, without the wafer's ellipse or die noise.
    grey = image.shape.rank == 3 and image.shape[-1] == 1
    levels = [
        tf.equal(image, tf.constant(level, image.dtype)) for level in (OFF_WAFER_LEVEL, PASS_DIE_LEVEL, FAIL_DIE_LEVEL)
    ]
    wafer_map = tf.reduce_all(levels[0] | levels[1] | levels[2]) if grey else tf.constant(False)

    def resampled() -> tf.Tensor:
        out_rows, out_cols = scaled(rows, scales[0]), scaled(cols, scales[1])
        angle = tf.random.uniform([], 0.0, 6.283185307179586) if config.rotate else tf.constant(0.0)
        mirror = (tf.random.uniform([]) < 0.5) if config.rotate and config.flip else tf.constant(False)
        out = resample(image, out_rows, out_cols, angle, mirror)
        if grey:
            # A grey wafer map: no die outside the new grid's inscribed ellipse (nearest-die sampling
            # can carry a rim die just past it).
            v, u = tf.meshgrid(_wafer_axis(out_rows), _wafer_axis(out_cols), indexing="ij")
            out = tf.where(((u * u + v * v <= 1.0) | ~wafer_map)[..., None], out, tf.zeros_like(out))
        return out

    out = resampled() if config.rotate else tf.cond(regrid, resampled, lambda: image)
    if grey:
        noisy = die_noise(
            out,
            tf.random.uniform([], 0.0, config.max_pass_to_fail),
            tf.random.uniform([], 0.0, config.max_fail_to_pass),
        )
        out = tf.where(wafer_map, noisy, out)
    return out


def dihedral(images: tf.Tensor, flip: bool = True) -> tf.Tensor:
    """Each image of a batch (B, H, W, C) in one of its 8 orientations (mirrors and quarter turns),
    drawn per image: exact, so one-die lines stay whole. Quarter turns need square images (H == W);
    other shapes get the 4 mirror combinations."""
    if not flip:
        return images
    images = tf.image.random_flip_left_right(images)
    images = tf.image.random_flip_up_down(images)
    if images.shape[1] is not None and images.shape[1] == images.shape[2]:
        transpose = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < 0.5
        images = tf.where(transpose, tf.transpose(images, [0, 2, 1, 3]), images)
    return images


#: How many orientations test-time averaging may use: 1 (none), 2 (and the mirror), 4 (the mirrors,
#: any image shape) or 8 (and the transposes: every quarter turn, square images only).
ORIENTATIONS = (1, 2, 4, 8)


def orientations_of(images: tf.Tensor, count: int) -> tf.Tensor:
    """The batch (B, H, W, C) in ``count`` exact orientations, stacked view-major: (count * B, H, W, C)."""
    if count not in ORIENTATIONS:
        raise ValueError(f"orientations must be one of {ORIENTATIONS}; got {count!r}")
    if count == 8 and images.shape[1] != images.shape[2]:
        raise ValueError(f"8 orientations need square images; got {images.shape[1]}x{images.shape[2]} (use 4)")
    views = [images]
    if count >= 2:
        views.append(tf.reverse(images, axis=[2]))
    if count >= 4:
        views += [tf.reverse(v, axis=[1]) for v in views]
    if count == 8:
        views += [tf.transpose(v, [0, 2, 1, 3]) for v in views]
    return tf.concat(views, axis=0)


def mean_over_orientations(model, images: tf.Tensor, count: int) -> tf.Tensor:
    """``model``'s output averaged over ``count`` exact orientations of each image (test-time averaging).

    Wafer patterns keep their class under mirrors and quarter turns; averaging the cosine logits over
    them removes the orientation noise a small network keeps after training with :func:`dihedral`.
    """
    if count == 1:
        return model(images, training=False)
    outputs = model(orientations_of(images, count), training=False)
    return tf.reduce_mean(
        tf.reshape(outputs, tf.concat([[count, tf.shape(images)[0]], tf.shape(outputs)[1:]], 0)), axis=0
    )
