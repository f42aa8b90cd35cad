"""The spanet TFX pipeline: its configuration, its definition and its runners."""

from pipeline import startup  # noqa: E402,F401  (the process settings, before TensorFlow is imported)
