"""Test-wide settings: Keras 2 (tf_keras) before TensorFlow loads, quiet logs, offline plots."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
