"""WaferExampleGen: wafer maps / defect images in any supported format -> split tf.Examples + a quarantine report."""

from components.wafer_example_gen.artifacts import WaferQuarantineReport
from components.wafer_example_gen.component import WaferExampleGen, WaferExampleGenSpec

__all__ = ["WaferExampleGen", "WaferExampleGenSpec", "WaferQuarantineReport"]
