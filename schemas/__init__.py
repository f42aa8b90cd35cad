"""The curated schema of ingested wafer examples: its path (for ImportSchemaGen) and a loader."""

import os

#: The text-format tensorflow_metadata Schema shipped with the package.
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.pbtxt")


def schema_path() -> str:
    """Path of ``schema.pbtxt``, as ``ImportSchemaGen(schema_file=schema_path())`` takes it."""
    return SCHEMA_FILE


def load_schema():
    """The curated schema as a ``tensorflow_metadata.proto.v0.schema_pb2.Schema`` (no TensorFlow import)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    with open(SCHEMA_FILE, "r", encoding="utf-8") as fh:
        return text_format.Parse(fh.read(), schema_pb2.Schema())
