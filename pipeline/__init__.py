"""The spanet TFX pipeline: its configuration, its definition and its runners."""
