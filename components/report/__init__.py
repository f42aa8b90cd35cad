"""The run report: an HTML page (plus PNGs) of the evaluation, training and data of a pipeline run.

- ``render``: plots and HTML from plain data (no TFX; experiments reuse the plotting);
- ``collect``: reads a run's artifact folders into that data;
- ``component``: the TFX component ``EvaluationReporter`` (imported lazily: it needs TFX).
"""
