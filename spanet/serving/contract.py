"""The exported model's serving contract, in one place: signature names, inputs, output keys, the
warm-up file and batch sizes. The exporter (``components/serving.py``), the Evaluator's config, the
warm-up writer, the client, the local server and batch scoring all import these; nothing else spells them.

Plain constants (no TensorFlow import), so any module can read them cheaply.
"""

#: The name TF Serving serves the model under unless configured otherwise (its warm-up requests carry it).
DEFAULT_MODEL_NAME = "spanet"

#: Encoded images (PNG / JPEG bytes, any size) -> every output below: what clients call.
DEFAULT_SIGNATURE = "serving_default"
#: Serialized raw tf.Examples -> probabilities and defect score (and patterns present): the Evaluator's.
EXAMPLES_SIGNATURE = "serving_examples"
#: Serialized raw tf.Examples -> the transformed labels (TFMA's ``preprocessing_function_names``).
LABELS_SIGNATURE = "transform_features"
#: As ``serving_default``, plus ``EXPLANATION``: which pixels drove the call (``spanet.explain``).
EXPLAIN_SIGNATURE = "explain"
#: A zero-input signature returning the class order, used by the client when a model has one.
CLASS_NAMES_SIGNATURE = "class_names"

#: Input of ``serving_default`` / ``explain`` (a batch of encoded images) and of the tf.Example signatures.
IMAGES_INPUT = "images"
EXAMPLES_INPUT = "examples"

#: Outputs.
PROBABILITIES = "probabilities"
DEFECT_SCORE = "defect_score"
CLASS_ID = "class_id"
CLASS_NAME = "class_name"
DEFECTIVE = "defective"
NORMAL_PROBABILITY = "normal_probability"
#: True where the input is unlike every class (its class name is then UNKNOWN_CLASS).
UNKNOWN = "unknown"
#: The largest cosine similarity to a class: how much the input looks like anything trained on.
FAMILIARITY = "familiarity"
#: Multi-label mode: 1.0 / 0.0 per pattern, present or not, in pattern order.
PATTERNS_PRESENT = "patterns_present"
#: ``explain`` only: (B, H, W) map in [0, 1] at the model's input size.
EXPLANATION = "explanation"
#: What a client needs from ``serving_default``, and what it reads when present.
REQUIRED_OUTPUTS = (PROBABILITIES, CLASS_ID, CLASS_NAME, DEFECTIVE, DEFECT_SCORE)
OPTIONAL_OUTPUTS = (UNKNOWN, FAMILIARITY, PATTERNS_PRESENT)

#: The class name served for unknown inputs.
UNKNOWN_CLASS = "unknown"
#: Multi-label mode: a pattern is present at this calibrated probability or more.
PATTERN_THRESHOLD = 0.5

#: TF Serving's warm-up records inside a SavedModel version (PredictionLog TFRecords).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
#: Batch sizes warmed up; TF Serving's ``allowed_batch_sizes`` (pipeline/cluster.py) are these.
WARMUP_BATCH_SIZES = (1, 8, 32)
