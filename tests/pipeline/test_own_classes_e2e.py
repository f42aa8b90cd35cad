"""The pipeline on the user's own classes: a folder of RGB and grey inspection images (JPEG and PNG,
mixed sizes) in classes particle / bridge / residue / good, discovered from the folder names, with
``good`` as the normal class. Trained, gated, pushed, and the served model answers those names."""

import io
import os
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

pytestmark = pytest.mark.slow

CLASSES = ("bridge", "good", "particle", "residue")
NORMAL = "good"


def inspection_image(label: str, rng: np.random.Generator) -> np.ndarray:
    """An RGB (H, W, 3) uint8 picture of a patterned die surface, with the class's defect drawn on it."""
    h, w = (int(v) for v in rng.integers(40, 121, size=2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.array([80.0, 105.0, 135.0]) + rng.uniform(-12, 12, 3)
    image = base + 12.0 * np.sign(np.sin(xx / rng.uniform(3, 6)))[..., None] + rng.normal(0, 4, (h, w, 3))
    side = min(h, w)
    if label == "particle":
        for _ in range(int(rng.integers(2, 4))):
            cy, cx, r = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w, side * rng.uniform(0.09, 0.14)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 245.0
    elif label == "bridge":
        (y0, x0), (y1, x1) = rng.uniform(0.1, 0.9, (2, 2)) * [h, w]
        length = max(np.hypot(y1 - y0, x1 - x0), 1.0)
        distance = np.abs((x1 - x0) * (y0 - yy) - (x0 - xx) * (y1 - y0)) / length
        image[distance <= side * rng.uniform(0.09, 0.13)] = 25.0
    elif label == "residue":
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = side * rng.uniform(0.2, 0.3, 2)
        image[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = [90.0, 45.0, 5.0]  # dark in grey too
    return np.clip(image, 0, 255).astype(np.uint8)


def encoded(image: np.ndarray, kind: str) -> bytes:
    """JPEG (RGB), PNG (grey) or PNG (RGB: ``png-rgb``) bytes of an image."""
    buffer = io.BytesIO()
    if kind == "jpeg":
        Image.fromarray(image).save(buffer, format="JPEG", quality=92)
    elif kind == "png-rgb":
        Image.fromarray(image).save(buffer, format="PNG")
    else:
        Image.fromarray(image).convert("L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_inspection_folder(root, per_class: int, seed: int) -> str:
    """``root/<class>/<n>.jpg|png``: a fifth of the images grey PNGs, the rest RGB JPEGs."""
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        os.makedirs(os.path.join(root, label))
        for n in range(per_class):
            kind = "png" if n % 5 == 0 else "jpeg"
            with open(os.path.join(root, label, f"{n:03d}.{'png' if kind == 'png' else 'jpg'}"), "wb") as handle:
                handle.write(encoded(inspection_image(label, rng), kind))
    return str(root)


@pytest.fixture(scope="module")
def own_classes_run(tmp_path_factory, tiny_config):
    from components.evaluation import GateConfig
    from pipeline.results import read_results
    from pipeline.run_local import run

    out = tmp_path_factory.mktemp("own_classes")
    data = write_inspection_folder(out / "data", per_class=60, seed=0)
    config = tiny_config(out / "run", data_path=data, data_format="auto", class_names=None)
    config = config.with_updates(
        image=replace(config.image, channels=3, normal_class=NORMAL),
        training=replace(config.training, epochs=16),
        # Test configuration, not the product's gate: about 30 defective test images cannot show 0.99
        # (see tests/conftest.py). A lower bound of 0.75 allows up to 3 misses in 30, so the test
        # does not hang on one borderline image of a run that is not bit-for-bit reproducible across
        # machines; a model that has not learnt the classes still fails it, here or on false alarms.
        gate=GateConfig(min_defect_recall=0.75, max_false_alarm_rate=0.2, min_slice_support=10, normal_class=NORMAL),
    )
    code = run(config)
    return {"code": code, "config": config, "results": read_results(config.metadata_path)}


def _latest_version(serving_dir):
    return os.path.join(serving_dir, max((v for v in os.listdir(serving_dir) if v.isdigit()), key=int))


def test_rgb_folder_with_its_own_classes_is_blessed_and_pushed(own_classes_run):
    results = own_classes_run["results"]
    assert own_classes_run["code"] == 0, results
    assert results.blessed and results.pushed
    assert sorted(results.training_summary["class_names"]) == list(CLASSES)
    # The census, the schema and the gate all saw the folder's class names.
    assert results.quarantine_summary["rejected_total"]["invalid"] == 0
    assert set(results.quarantine_summary["examples_per_split_and_class"]["test"]) == set(CLASSES)


def test_served_model_answers_the_class_names_for_images_of_any_size(own_classes_run):
    model = tf.saved_model.load(_latest_version(own_classes_run["config"].serving_dir))
    rng = np.random.default_rng(99)
    labels = [label for label in CLASSES for _ in range(6)]
    images = [inspection_image(label, rng) for label in labels]
    kinds = ["png" if i % 3 == 0 else "jpeg" for i in range(len(images))]
    assert len({img.shape[:2] for img in images}) > 10  # many sizes in one request
    out = model.signatures["serving_default"](images=tf.constant([encoded(i, k) for i, k in zip(images, kinds)]))
    names = [n.decode() for n in out["class_name"].numpy()]
    assert set(names) <= set(CLASSES) | {"unknown"}
    accuracy = np.mean([n == label for n, label in zip(names, labels)])
    assert accuracy >= 0.8, list(zip(labels, names))
    flags = out["defective"].numpy()
    for label, name, flag in zip(labels, names, flags):
        if name in CLASSES:
            assert (
                flag == (name != NORMAL) or name == NORMAL and flag
            )  # a 'good' answer may still be flagged by the threshold
    defects = [flag for label, flag in zip(labels, flags) if label != NORMAL]
    assert np.mean(defects) >= 0.9


def _planted(label: str, image: np.ndarray) -> np.ndarray:
    """The pixels of the defect ``inspection_image`` drew (it paints them in one exact colour)."""
    return (image == [90, 45, 5]).all(-1) if label == "residue" else (image == 245).all(-1)


def test_explanations_have_the_images_shape_and_point_at_the_planted_defect(own_classes_run):
    from scipy.ndimage import binary_dilation
    from scipy.stats import binomtest

    from spanet.explain import peak, to_shape
    from spanet.serving.local import LocalModel

    model = LocalModel(own_classes_run["config"].serving_dir)
    rng = np.random.default_rng(7)
    # Residue: one large planted blob, which is the class's only evidence. Particle images are not used:
    # a fresh-clone CI model classified them right while its map pointed elsewhere (lift < 1 on 11 of
    # 12), i.e. that model had learned another cue, which a faithful map then shows.
    labels = ["residue"] * 16
    images = [inspection_image(label, rng) for label in labels]
    answers = model.explain([encoded(image, "png-rgb") for image in images])
    hits, lifts = [], []
    for label, image, (prediction, cam) in zip(labels, images, answers):
        on_image = to_shape(cam, image.shape[:2])
        assert on_image.shape == image.shape[:2]
        # Within two model-input pixels of the defect (the map is computed at 64x64, then resized).
        margin = int(np.ceil(2 * max(image.shape[:2]) / 64))
        defect = binary_dilation(_planted(label, image), iterations=margin)
        hits.append(bool(defect[peak(on_image)]))
        # How much denser the map is on the defect than elsewhere (1: no preference).
        lifts.append(float(on_image[defect].mean() / max(on_image[~defect].mean(), 1e-12)))
    # The map's mass, not only its single brightest pixel, which is one draw of a tiny model's training:
    # four models of this run had their peak on the blob for 16, 16, 10 and 11 of the 16 images (one CI
    # model 8), and lifts above 1 on 16, 16, 16 and 15 (medians 3.1, 17.6, 2.0, 2.0; a later CI model 16,
    # median 1.44, geometric mean 1.46). A map that pointed elsewhere (the particle images of one CI model)
    # had lifts below 1 on 11 of 12. Grad-CAM's peaks reached at most 48 % of images.
    # Two checks: the map prefers the defect on more images than chance allows (a one-sided sign test
    # against "no preference", p <= 0.01, i.e. at least 14 of 16), and by a clear margin on average
    # (geometric mean of the lifts at least 1.25, robust to one image's huge ratio).
    preferred = int(np.sum(np.array(lifts) > 1.0))
    sign_test = binomtest(preferred, len(lifts), 0.5, alternative="greater").pvalue
    geometric_mean = float(np.exp(np.mean(np.log(lifts))))
    assert sign_test <= 0.01 and geometric_mean >= 1.25, (preferred, geometric_mean, lifts, hits)
