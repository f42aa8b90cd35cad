"""Watching production traffic: per-wafer features of logged requests, compared with training data.

``features`` derives the per-wafer features (plain numpy, no TensorFlow); ``drift`` computes their
TFDV statistics and validates them against a baseline with TFDV's drift comparators. TensorFlow
Data Validation is a standalone library (not a TFX component), so this package may use it; it is
imported lazily, inside the functions that need it, so importing ``spanet.monitoring`` stays cheap.
Nothing here imports TFX or the pipeline.
"""
