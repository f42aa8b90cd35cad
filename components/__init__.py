"""TFX components of the SP&A-Net pipeline (they depend on `spanet`, never the other way round)."""

import spanet  # noqa: E402,F401  (its start-up, Keras 2 before TensorFlow, precedes every component module)
