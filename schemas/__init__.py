"""The curated schema of ingested examples: its path, a loader, and the schema for a run's own
classes (ClassSchemaGen)."""

import os

#: The text-format tensorflow_metadata Schema shipped with the package.
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.pbtxt")


def schema_path() -> str:
    """Path of the curated ``schema.pbtxt`` (the nine WM-811K classes as its label domain)."""
    return SCHEMA_FILE


def load_schema():
    """The curated schema as a ``tensorflow_metadata.proto.v0.schema_pb2.Schema`` (no TensorFlow import)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    with open(SCHEMA_FILE, "r", encoding="utf-8") as fh:
        return text_format.Parse(fh.read(), schema_pb2.Schema())


#: The schema's feature and string domain that hold the class name (components/features.py LABEL_KEY).
LABEL_DOMAIN = "label"


def schema_for_classes(class_names):
    """The curated schema with the label domain set to `class_names`: ExampleValidator then stops a
    run on any other label. Raises ValueError for an empty or repeated class list."""
    names = list(class_names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct names, at least one; got {names}")
    schema = load_schema()
    domain = next(d for d in schema.string_domain if d.name == LABEL_DOMAIN)
    del domain.value[:]
    domain.value.extend(names)
    return schema


def label_domain(schema):
    """The class names a schema allows."""
    return [v for d in schema.string_domain if d.name == LABEL_DOMAIN for v in d.value]
