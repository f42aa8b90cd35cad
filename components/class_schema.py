"""ClassSchemaGen: the curated schema (schemas/schema.pbtxt) with this run's classes as the label domain.

A component rather than a file the runner writes, so that the schema is made where the pipeline
runs (locally or in a Kubeflow pod) and is cached with the class list that made it.
"""

# No `from __future__ import annotations` here: TFX reads this module's type hints as objects.

import json
import os

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import io_utils

import schemas

#: The file name TFX's SchemaGen / ImportSchemaGen write (and ExampleValidator, Transform read any one file).
SCHEMA_FILE_NAME = "schema.pbtxt"


@component
def ClassSchemaGen(class_names: Parameter[str], schema: OutputArtifact[standard_artifacts.Schema]) -> None:
    """Writes the curated schema with the label domain set to ``class_names`` (a JSON list)."""
    names = json.loads(class_names)
    io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE_NAME), schemas.schema_for_classes(names))
