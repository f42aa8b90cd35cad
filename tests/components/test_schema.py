"""The curated schema: clean ingested examples pass it; a planted unknown label and a missing image do not."""

import os


import pytest

tfdv = pytest.importorskip("tensorflow_data_validation")

from tensorflow_metadata.proto.v0 import anomalies_pb2  # noqa: E402
from tensorflow_data_validation.statistics import stats_impl, stats_options  # noqa: E402
from tfx_bsl.coders import example_coder  # noqa: E402

import schemas  # noqa: E402
from components import features  # noqa: E402
from spanet.data import WAFER_CLASSES, generate_wafer_maps  # noqa: E402


def _stats(examples):
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch([e.SerializeToString() for e in examples])
    # The same statistics generators StatisticsGen runs, in memory (no Beam job for tens of examples).
    return stats_impl.generate_statistics_in_memory(batch, stats_options.StatsOptions())


def _examples(n=20):
    return [features.record_to_example(r) for r in generate_wafer_maps(n, 0, min_size=26, max_size=32)]


def test_schema_file_is_the_curated_one():
    schema = schemas.load_schema()
    assert os.path.isfile(schemas.schema_path()) and schemas.schema_path().endswith("schema.pbtxt")
    assert {f.name for f in schema.feature} == set(features.FEATURE_KEYS)
    label_domain = next(d for d in schema.string_domain if d.name == "label")
    assert tuple(label_domain.value) == WAFER_CLASSES
    stage = next(f for f in schema.feature if f.name == features.STAGE_KEY)
    assert stage.presence.min_fraction == 0.0
    height = next(f for f in schema.feature if f.name == features.HEIGHT_KEY)
    assert (height.int_domain.min, height.int_domain.max) == (1, 4096)


def test_clean_examples_have_no_anomaly():
    anomalies = tfdv.validate_statistics(_stats(_examples()), schemas.load_schema())
    assert dict(anomalies.anomaly_info) == {}


def test_planted_unknown_label_and_missing_image_are_reported():
    examples = _examples()
    examples[3].features.feature[features.LABEL_KEY].bytes_list.value[0] = b"Blob"
    del examples[5].features.feature[features.IMAGE_KEY]
    anomalies = tfdv.validate_statistics(_stats(examples), schemas.load_schema())
    info = dict(anomalies.anomaly_info)
    assert set(info) == {features.LABEL_KEY, features.IMAGE_KEY}
    assert "Blob" in info[features.LABEL_KEY].description
    kinds = {key: {anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in a.reason} for key, a in info.items()}
    assert kinds[features.LABEL_KEY] == {"ENUM_TYPE_UNEXPECTED_STRING_VALUES"}
    assert "FEATURE_TYPE_LOW_FRACTION_PRESENT" in kinds[features.IMAGE_KEY]
    assert "actual = 0.95" in info[features.IMAGE_KEY].description  # 1 of 20 examples has no image


def test_slicing_buckets_are_required_and_in_their_domains():
    schema = schemas.load_schema()
    for key, values in (
        (features.SIZE_BUCKET_KEY, features.SIZE_BUCKETS),
        (features.ASPECT_BUCKET_KEY, features.ASPECT_BUCKETS),
    ):
        feature = next(f for f in schema.feature if f.name == key)
        assert feature.presence.min_fraction == 1.0 and feature.domain == key
        assert tuple(next(d for d in schema.string_domain if d.name == key).value) == values
    examples = _examples()
    examples[2].features.feature[features.SIZE_BUCKET_KEY].bytes_list.value[0] = b"huge"
    del examples[4].features.feature[features.ASPECT_BUCKET_KEY]
    info = dict(tfdv.validate_statistics(_stats(examples), schema).anomaly_info)
    assert set(info) == {features.SIZE_BUCKET_KEY, features.ASPECT_BUCKET_KEY}
    assert "huge" in info[features.SIZE_BUCKET_KEY].description


def test_a_runs_own_classes_replace_the_label_domain():
    from components.features import record_to_example
    from spanet.data.records import WaferRecord
    import numpy as np

    own = schemas.schema_for_classes(["good", "particle", "bridge"])
    assert schemas.label_domain(own) == ["good", "particle", "bridge"]
    assert schemas.label_domain(schemas.load_schema()) == list(WAFER_CLASSES)  # the curated file is untouched
    rgb = np.zeros((40, 50, 3), np.uint8)
    examples = [
        record_to_example(WaferRecord(image=rgb, label=label, source="png", ref=f"{label}/{i}.jpg"))
        for i, label in enumerate(["good", "particle", "bridge", "residue"] * 5)
    ]
    info = dict(tfdv.validate_statistics(_stats(examples), own).anomaly_info)
    assert set(info) == {features.LABEL_KEY} and "residue" in info[features.LABEL_KEY].description
    with pytest.raises(ValueError, match="distinct names"):
        schemas.schema_for_classes(["a", "a"])


def test_class_schema_component_writes_the_schema_tfx_reads(tmp_path):
    import json

    from tfx.types import standard_artifacts
    from tfx.utils import io_utils

    from components.class_schema import ClassSchemaGen

    artifact = standard_artifacts.Schema()
    artifact.uri = str(tmp_path)
    executor = ClassSchemaGen.EXECUTOR_SPEC.executor_class()
    executor.Do({}, {"schema": [artifact]}, {"class_names": json.dumps(["ok", "bad"])})
    written = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(str(tmp_path)))
    assert schemas.label_domain(written) == ["ok", "bad"]
