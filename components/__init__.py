"""TFX components of the SP&A-Net pipeline (they depend on `spanet`, never the other way round)."""
