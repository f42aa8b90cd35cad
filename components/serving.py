"""The exported model's signatures: raw image bytes for clients, tf.Examples for the Evaluator.

- ``serving_default``: ``images`` (a batch of PNG/JPEG bytes, any size) -> probabilities,
  class id, class name, P(normal), the defect flag, the defect score, and whether the input is
  unknown (unlike every class: its familiarity, the largest cosine similarity to a class, is
  below the threshold the Trainer calibrated, or its pixel statistics lie outside the training
  data's envelope, see ``spanet.ood``; its class name is then ``unknown`` and it is flagged
  defective, sent to review, never a confident normal).
- ``serving_examples``: serialized raw tf.Examples -> probabilities and defect score.
- ``transform_features``: serialized raw tf.Examples -> the transformed labels
  (TFMA's ``preprocessing_function_names`` reads the labels through it).
- ``explain``: the same input and outputs as ``serving_default`` plus ``explanation``, the SmoothGrad
  map (B, H, W) in [0, 1] of the predicted class (multi-label: the most probable pattern) at the
  model's input size (``spanet.explain``: measured to point at the defect far more often than Grad-CAM).

A multi-label model (``--mixed multilabel``) answers the same keys: ``probabilities`` one sigmoid
per pattern, ``patterns_present`` 1 / 0 per pattern, ``class_name`` the patterns present joined
with ``+`` (the normal class when none is), P(normal) = 1 - the largest pattern probability, so
the defect flag means "any pattern present" at the operating threshold.

Preprocessing is the Transform graph itself (attached as ``tft_layer``), so serving
decodes and resizes exactly as training did. The classifier in every signature but ``explain``
is the Keras model frozen at export (``spanet.export.FrozenInference``: weights as constants,
BatchNorm folded into the kernels once), so a server runs the frozen graph's speed; ``explain``
needs gradients of the live model and keeps it.
"""

from __future__ import annotations


from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import features
from components.config import (
    CLASS_ID,
    CLASS_NAME,
    DEFECT_SCORE,
    DEFECTIVE,
    FAMILIARITY,
    IMAGE_XF,
    IS_DEFECT_XF,
    LABEL_XF,
    NORMAL_PROBABILITY,
    PATTERN_THRESHOLD,
    PATTERNS_PRESENT,
    PATTERNS_XF,
    PROBABILITIES,
    UNKNOWN,
    UNKNOWN_CLASS,
)
from components.operating_point import defect_score
from spanet.augment import mean_over_orientations
from spanet.explain import smooth_saliency
from spanet.serving.contract import (
    DEFAULT_SIGNATURE,
    EXAMPLES_INPUT,
    EXAMPLES_SIGNATURE,
    EXPLAIN_SIGNATURE,
    EXPLANATION,
    IMAGES_INPUT,
    LABELS_SIGNATURE,
)
from spanet.export import FrozenInference, export_saved_model
from spanet.calibration import SIGMOID_BOUNDARY
from spanet.data.classes import MIXED_LABEL_SEPARATOR, NORMAL_CLASS
from spanet.ood import STATISTICS, fit_envelope, input_statistics, multilabel_familiarity, outside_envelope

#: The defect score of an unknown input that is flagged: above the flag's 0.5, below a sure defect.
UNKNOWN_DEFECT_SCORE = 0.75


class ServingModel(tf.Module):
    """The classifier plus its calibration and operating point, as one exportable module."""

    def __init__(
        self,
        model: tf.keras.Model,
        tft_output: tft.TFTransformOutput,
        class_names: Sequence[str],
        normal_class_id: int,
        probability_scale: float,
        normal_threshold: float,
        familiarity_threshold: float = -1.0,
        envelope: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
        unknown_is_defective: bool = True,
        orientations: int = 1,
        normal_class: str = NORMAL_CLASS,
        multilabel: bool = False,
        statistics_channels: Optional[int] = None,
    ):
        super().__init__(name="spanet_serving")
        #: The input envelope's statistics are of the first this many input channels (the image's own;
        #: None: all), as the Trainer computed them (a Python int: fixed in the traced graph).
        self.statistics_channels = None if statistics_channels is None else int(statistics_channels)
        self.model = model
        #: The model's inference pass with its weights frozen now (the classifier of the signatures).
        self.inference = FrozenInference(model)
        #: One sigmoid per pattern (``class_names`` are then the patterns) instead of one softmax
        #: (a Python bool: fixed in the graph).
        self.multilabel = bool(multilabel)
        self.normal_class = tf.Variable(normal_class, trainable=False, name="normal_class")
        #: Test-time averaging over this many exact orientations (a Python int: fixed in the traced graph).
        self.orientations = int(orientations)
        self.tft_layer = tft_output.transform_features_layer()
        self._raw_spec = tft_output.raw_feature_spec()
        # Stored in the SavedModel: readable after tf.saved_model.load, and reported.
        self.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
        self.normal_class_id = tf.Variable(
            int(normal_class_id), trainable=False, dtype=tf.int64, name="normal_class_id"
        )
        self.probability_scale = tf.Variable(float(probability_scale), trainable=False, name="probability_scale")
        self.normal_threshold = tf.Variable(float(normal_threshold), trainable=False, name="normal_threshold")
        self.familiarity_threshold = tf.Variable(
            float(familiarity_threshold), trainable=False, name="familiarity_threshold"
        )
        low, high = envelope if envelope is not None else fit_envelope(np.zeros([0, len(STATISTICS)]))
        self.envelope_low = tf.Variable(np.asarray(low, np.float32), trainable=False, name="envelope_low")
        self.envelope_high = tf.Variable(np.asarray(high, np.float32), trainable=False, name="envelope_high")
        self.unknown_is_defective = tf.Variable(
            bool(unknown_is_defective), trainable=False, name="unknown_is_defective"
        )

    def _patterns_present(self, probabilities: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """(B, P) float 1 / 0 per pattern, and (B,) the names of those present joined with ``+`` (else the
        normal class)."""
        present = probabilities >= PATTERN_THRESHOLD
        names = tf.broadcast_to(self.class_names, tf.shape(probabilities))
        joined = tf.strings.reduce_join(
            tf.ragged.boolean_mask(names, present), axis=-1, separator=MIXED_LABEL_SEPARATOR
        )
        joined = tf.where(tf.reduce_any(present, axis=-1), joined, self.normal_class)
        return tf.cast(present, tf.float32), joined

    def _classify(self, image_xf: tf.Tensor) -> Dict[str, tf.Tensor]:
        cosines = mean_over_orientations(self.inference, image_xf, self.orientations)
        extra = {}
        if self.multilabel:
            probabilities = tf.sigmoid((cosines - SIGMOID_BOUNDARY) * self.probability_scale)
            p_normal = 1.0 - tf.reduce_max(probabilities, axis=-1)
            familiarity = multilabel_familiarity(cosines)
            extra[PATTERNS_PRESENT], predicted_name = self._patterns_present(probabilities)
        else:
            probabilities = tf.nn.softmax(cosines * self.probability_scale, axis=-1)
            p_normal = tf.gather(probabilities, self.normal_class_id, axis=-1)
            familiarity = tf.reduce_max(cosines, axis=-1)
            predicted_name = tf.gather(self.class_names, tf.argmax(probabilities, axis=-1))
        unknown = (familiarity < self.familiarity_threshold) | outside_envelope(
            input_statistics(image_xf, self.statistics_channels), self.envelope_low, self.envelope_high
        )
        flag_unknown = unknown & self.unknown_is_defective
        # An unknown wafer is flagged (sent to review): its score is at least UNKNOWN_DEFECT_SCORE > 0.5,
        # so the Evaluator's defect recall counts exactly what is served.
        score = defect_score(p_normal, self.normal_threshold, clip=tf.clip_by_value)
        score = tf.where(flag_unknown, tf.maximum(score, UNKNOWN_DEFECT_SCORE), score)
        class_id = tf.argmax(probabilities, axis=-1)
        class_name = tf.where(unknown, tf.constant(UNKNOWN_CLASS), predicted_name)
        return {
            **extra,
            PROBABILITIES: probabilities,
            CLASS_ID: class_id,
            CLASS_NAME: class_name,
            NORMAL_PROBABILITY: p_normal,
            DEFECTIVE: tf.less(p_normal, self.normal_threshold) | flag_unknown,
            DEFECT_SCORE: score,
            UNKNOWN: unknown,
            FAMILIARITY: familiarity,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES_INPUT)], autograph=False)
    def serve_images(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        # The schema makes `image` a FixedLenFeature of shape [1]: the Transform graph wants (B, 1).
        transformed = self.tft_layer({features.IMAGE_KEY: tf.reshape(images, [-1, 1])})
        return self._classify(transformed[IMAGE_XF])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES_INPUT)], autograph=False)
    def explain_images(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        image_xf = self.tft_layer({features.IMAGE_KEY: tf.reshape(images, [-1, 1])})[IMAGE_XF]
        outputs = self._classify(image_xf)
        # The served class id is the arg-max of the probabilities (multi-label: the likeliest pattern).
        outputs[EXPLANATION] = smooth_saliency(self.model, image_xf, outputs[CLASS_ID])
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False)
    def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        spec = {features.IMAGE_KEY: self._raw_spec[features.IMAGE_KEY]}
        transformed = self.tft_layer(tf.io.parse_example(examples, spec))
        outputs = self._classify(transformed[IMAGE_XF])
        keys = (PROBABILITIES, DEFECT_SCORE) + ((PATTERNS_PRESENT,) if self.multilabel else ())
        return {key: outputs[key] for key in keys}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False)
    def transform_features(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        spec = {key: self._raw_spec[key] for key in (features.IMAGE_KEY, features.LABEL_KEY)}
        transformed = self.tft_layer(tf.io.parse_example(examples, spec))
        keys = (LABEL_XF, IS_DEFECT_XF) + ((PATTERNS_XF,) if self.multilabel else ())
        return {key: transformed[key] for key in keys}

    def signatures(self) -> Dict[str, tf.types.experimental.GenericFunction]:
        return {
            DEFAULT_SIGNATURE: self.serve_images,
            EXAMPLES_SIGNATURE: self.serve_examples,
            LABELS_SIGNATURE: self.transform_features,
            EXPLAIN_SIGNATURE: self.explain_images,
        }


def export_serving_model(path: str, serving: ServingModel, extra_files: Optional[Mapping[str, bytes]] = None) -> str:
    """Writes the SavedModel atomically: the signatures, the model's variables, the Transform graph
    and ``extra_files`` (relative path -> bytes, e.g. under ``assets.extra/``)."""
    if tf.io.gfile.isdir(path) and not tf.io.gfile.listdir(path):
        tf.io.gfile.rmtree(path)  # TFX may create the (empty) Format-Serving folder beforehand
    return export_saved_model(
        path,
        serving.signatures(),
        models=[serving.model],
        extra_files=extra_files,
        tft_layer=serving.tft_layer,
        class_names=serving.class_names,
        normal_class_id=serving.normal_class_id,
        normal_class=serving.normal_class,
        probability_scale=serving.probability_scale,
        normal_threshold=serving.normal_threshold,
        familiarity_threshold=serving.familiarity_threshold,
        envelope_low=serving.envelope_low,
        envelope_high=serving.envelope_high,
        unknown_is_defective=serving.unknown_is_defective,
    )
