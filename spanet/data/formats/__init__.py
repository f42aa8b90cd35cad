"""On-disk formats: one module per format, each with its reader (and writer where we write it)."""
