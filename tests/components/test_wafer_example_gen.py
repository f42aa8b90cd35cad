"""WaferExampleGen through the real LocalDagRunner (Beam DirectRunner, multi-processing and in-process)."""

import csv
import glob
import json
import os


import numpy as np
import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from tfx import v1 as tfx

from components import features
from components.wafer_example_gen import WaferExampleGen
from components.wafer_example_gen.artifacts import REJECTED_CSV, SUMMARY_JSON
from spanet.data import decode_image, generate_wafer_maps, write_dataset

MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]
COUNT, LOT_SIZE = 60, 5


def _run(tmp_path, component, beam_args=(), enable_cache=False):
    """Run a one-component pipeline; return the published artifacts {type name: [artifact]}."""
    db = str(tmp_path / "metadata.db")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="wafer-example-gen-test",
        pipeline_root=str(tmp_path / "root"),
        components=[component],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db),
        beam_pipeline_args=list(beam_args),
        enable_cache=enable_cache,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(db))
    return {t: store.get_artifacts_by_type(t) for t in ("Examples", "spanet.WaferQuarantineReport")}


def _read_split(uri, split):
    files = sorted(glob.glob(os.path.join(uri, f"Split-{split}", "data_tfrecord-*.gz")))
    assert files, f"no TFRecord files in Split-{split}"
    out = []
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        ex = tf.train.Example.FromString(raw)
        f = ex.features.feature
        out.append({k: (f[k].bytes_list.value[0] if k in features.BYTES_KEYS else f[k].int64_list.value[0]) for k in f})
    return out


@pytest.fixture(scope="module")
def png_data(tmp_path_factory):
    """60 synthetic maps in 12 lots as a PNG folder + manifest, plus a corrupt image and a missing file."""
    root = tmp_path_factory.mktemp("wafers") / "png"
    records = generate_wafer_maps(COUNT, 21, lot_size=LOT_SIZE, min_size=26, max_size=34)
    write_dataset(records, str(root), "png")
    (root / "Center" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with open(root / "manifest.csv", "a") as fh:
        fh.write("Center/corrupt.png,Center,LOTX,01,sort\nLoc/missing.png,Loc,LOTX,02,sort\n")
    return str(root), records


def test_feature_contract_and_example_builder():
    assert features.FEATURE_KEYS == (
        "image",
        "label",
        "lot_id",
        "wafer_id",
        "stage",
        "source",
        "height",
        "width",
        "size_bucket",
        "aspect_bucket",
    )
    assert set(features.BYTES_KEYS) | set(features.INT_KEYS) == set(features.FEATURE_KEYS)
    rec = generate_wafer_maps(1, 0)[0]
    f = features.record_to_example(rec).features.feature
    assert set(f) == set(features.FEATURE_KEYS)
    assert np.array_equal(decode_image(f["image"].bytes_list.value[0]), rec.image)
    assert f["label"].bytes_list.value[0].decode() == rec.label and f["stage"].bytes_list.value[0] == b"sort"
    assert (f["height"].int64_list.value[0], f["width"].int64_list.value[0]) == rec.original_shape
    height, width = rec.original_shape
    assert f["size_bucket"].bytes_list.value[0].decode() == features.size_bucket(height, width)
    assert f["aspect_bucket"].bytes_list.value[0].decode() == features.aspect_bucket(height, width)


@pytest.mark.parametrize(
    "shape, size, aspect",
    [
        ((6, 21), "<25", "wide"),  # WM-811K's smallest: sqrt(126) = 11.2, 21 / 6 = 3.5
        ((32, 29), "25-50", "square"),  # its most common
        ((25, 25), "25-50", "square"),  # edges are half-open: 25 starts the second bucket
        ((24, 26), "<25", "square"),  # sqrt(624) = 24.98
        ((50, 50), "50-100", "square"),
        ((100, 100), ">=100", "square"),
        ((300, 202), ">=100", "tall"),  # its largest: 202 / 300 = 0.67
        ((40, 32), "25-50", "square"),  # 32 / 40 = 0.8: square includes 0.8
        ((41, 32), "25-50", "tall"),
        ((32, 40), "25-50", "square"),  # 1.25: included too
        ((32, 41), "25-50", "wide"),
    ],
)
def test_size_and_aspect_buckets(shape, size, aspect):
    assert features.size_bucket(*shape) == size and features.aspect_bucket(*shape) == aspect
    assert size in features.SIZE_BUCKETS and aspect in features.ASPECT_BUCKETS


def test_bucket_values_equal_the_schema_domains():
    import schemas

    domains = {d.name: tuple(d.value) for d in schemas.load_schema().string_domain}
    assert domains[features.SIZE_BUCKET_KEY] == features.SIZE_BUCKETS
    assert domains[features.ASPECT_BUCKET_KEY] == features.ASPECT_BUCKETS
    with pytest.raises(ValueError, match="positive sides"):
        features.size_bucket(0, 5)


def test_component_configuration_is_checked_and_json_only():
    gen = WaferExampleGen(
        data_path="/data/x",
        data_format="npz",
        split_ratios={"train": 3, "eval": 1},
        seed=4,
        reader_options={"mixed": False},
    )
    props = gen.exec_properties
    assert props["split_ratios"] == '{"train": 3, "eval": 1}' and props["reader_options"] == '{"mixed": false}'
    assert all(isinstance(v, (str, int)) for v in props.values())
    with pytest.raises(ValueError, match="data_format 'tiff'"):
        WaferExampleGen(data_path="/x", data_format="tiff")
    with pytest.raises(ValueError, match="positive"):
        WaferExampleGen(data_path="/x", split_ratios={"train": 1, "eval": 0})


@pytest.mark.slow
def test_multi_processing_run_splits_by_lot_and_quarantines(tmp_path, png_data):
    data_path, records = png_data
    gen = WaferExampleGen(data_path=data_path, data_format="auto", split_ratios={"train": 0.7, "eval": 0.3}, seed=1)
    artifacts = _run(tmp_path, gen, MULTI_PROCESSING)
    [examples], [report] = artifacts["Examples"], artifacts["spanet.WaferQuarantineReport"]
    assert examples.properties["split_names"].string_value == '["train", "eval"]'
    train, evals = _read_split(examples.uri, "train"), _read_split(examples.uri, "eval")

    # every readable map once, with the metadata, and the lots disjoint between splits
    assert len(train) + len(evals) == COUNT and train and evals
    train_lots, eval_lots = {e["lot_id"] for e in train}, {e["lot_id"] for e in evals}
    assert not train_lots & eval_lots and len(train_lots | eval_lots) == COUNT // LOT_SIZE
    by_id = {(r.lot_id, r.wafer_id): r for r in records}
    for e in train + evals:
        rec = by_id[(e["lot_id"].decode(), e["wafer_id"].decode())]
        assert set(e) == set(features.FEATURE_KEYS)
        assert np.array_equal(decode_image(e["image"]), rec.image)
        assert (e["label"].decode(), e["source"], e["stage"]) == (rec.label, b"png", b"sort")
        assert (e["height"], e["width"]) == rec.original_shape

    # the quarantine report: the corrupt and the missing file with their reasons, and the counts
    with open(os.path.join(report.uri, REJECTED_CSV)) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["ref"], r["label"]) for r in rows] == [("Center/corrupt.png", "Center"), ("Loc/missing.png", "Loc")]
    assert "cannot decode image" in rows[0]["reason"] and "does not exist" in rows[1]["reason"]
    with open(os.path.join(report.uri, SUMMARY_JSON)) as fh:
        summary = json.load(fh)
    assert summary["examples_per_split"] == {"train": len(train), "eval": len(evals)}
    assert summary["lots_per_split"] == {"train": len(train_lots), "eval": len(eval_lots)}
    assert summary["rejected_total"] == {"invalid": 2, "unlabelled": 0, "excluded": 0}
    for split, exs in (("train", train), ("eval", evals)):
        labels = [e["label"].decode() for e in exs]
        assert summary["examples_per_split_and_class"][split] == {c: labels.count(c) for c in sorted(set(labels))}


@pytest.mark.slow
def test_in_process_run_of_an_npz_with_mixed_types_excluded(tmp_path):
    records = generate_wafer_maps(40, 5, lot_size=4, min_size=30, max_size=30, mixed_fraction=0.25)
    path = tmp_path / "data" / "Wafer_Map_Datasets.npz"
    write_dataset(records, str(path), "npz")
    gen = WaferExampleGen(data_path=str(path.parent), reader_options={"mixed": False}, seed=2)
    artifacts = _run(tmp_path, gen)
    [examples], [report] = artifacts["Examples"], artifacts["spanet.WaferQuarantineReport"]
    got = _read_split(examples.uri, "train") + _read_split(examples.uri, "eval")
    mixed = sum("+" in r.label for r in records)
    assert mixed > 0 and len(got) == len(records) - mixed
    assert all(e["source"] == b"npz" and b"+" not in e["label"] for e in got)
    summary = json.load(open(os.path.join(report.uri, SUMMARY_JSON)))
    assert summary["rejected_total"]["excluded"] == mixed and summary["data_format"] == "npz"
    assert open(os.path.join(report.uri, REJECTED_CSV)).read().strip() == "ref,reason,label"


@pytest.mark.slow
def test_changed_data_misses_the_cache_and_unchanged_data_hits_it(tmp_path):
    """A rerun on the same path after the data changed must ingest again (issue: stale cache)."""
    data = tmp_path / "png"
    # 20 lots of 2: every split gets lots (an empty split now stops ingestion).
    write_dataset(
        generate_wafer_maps(40, 4, lot_size=2, min_size=26, max_size=30, class_mix={"Center": 1.0, "none": 1.0}),
        str(data),
        "png",
    )

    def run_once():
        gen = WaferExampleGen(data_path=str(data), data_format="png", seed=1)
        return sorted(a.id for a in _run(tmp_path, gen, enable_cache=True)["Examples"])

    first = run_once()
    assert run_once() == first  # unchanged data: the cached execution is reused, no new artifact
    extra = generate_wafer_maps(5, 9, lot_size=5, min_size=26, max_size=30, class_mix={"Loc": 1.0})
    os.makedirs(data / "Loc", exist_ok=True)
    from spanet.data.imageio import encode_png

    for i, record in enumerate(extra):  # a new class appears: files and their manifest rows
        (data / "Loc" / f"new{i}.png").write_bytes(encode_png(record.image))
        with open(data / "manifest.csv", "a") as fh:
            fh.write(f"Loc/new{i}.png,Loc,LOTNEW,{i + 1:02d},sort\n")
    changed = run_once()
    assert len(changed) == len(first) + 1  # ingested again
    assert run_once() == changed


def test_fingerprint_follows_names_sizes_and_times(tmp_path):
    from components.wafer_example_gen.driver import input_fingerprint

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"12345")
    before = input_fingerprint(str(tmp_path))
    assert before.startswith("files:1,bytes:5,") and input_fingerprint(str(tmp_path)) == before
    (tmp_path / "a" / "y.png").write_bytes(b"1")
    assert input_fingerprint(str(tmp_path)) != before
    os.remove(tmp_path / "a" / "y.png")
    assert input_fingerprint(str(tmp_path)) == before
    os.utime(tmp_path / "a" / "x.png", ns=(1, 1))
    assert input_fingerprint(str(tmp_path)) != before
    assert input_fingerprint(str(tmp_path / "missing")) == "missing"


@pytest.mark.slow
def test_nothing_readable_fails_clearly_and_publishes_nothing(tmp_path):
    root = tmp_path / "g85" / "Center"
    root.mkdir(parents=True)
    (root / "a.g85").write_text("WAFER_MAP = {\nROWS = 1\n}\n")
    (root / "b.g85").write_text("not a map")
    gen = WaferExampleGen(data_path=str(tmp_path / "g85"), data_format="g85")
    with pytest.raises(Exception, match="no readable record") as info:
        _run(tmp_path, gen)
    assert "NULL_BIN is missing" in str(info.value)
    db = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.db"))
    store = metadata_store.MetadataStore(db)
    assert [a for a in store.get_artifacts_by_type("Examples") if a.state == a.LIVE] == []
    leftovers = [
        p
        for p in glob.glob(str(tmp_path / "root" / "WaferExampleGen" / "*" / "*" / "**"), recursive=True)
        if os.path.isfile(p)
    ]
    assert leftovers == []


@pytest.mark.slow
def test_an_empty_split_stops_ingestion_naming_the_split_and_publishes_nothing(tmp_path):
    # 20 maps in one lot of 25: every wafer lands in one split, the other splits are empty.
    root = tmp_path / "png"
    write_dataset(generate_wafer_maps(20, 3, lot_size=25, min_size=20, max_size=24), str(root), "png")
    gen = WaferExampleGen(data_path=str(root), data_format="png")
    with pytest.raises(Exception, match=r"split '\w+' is empty \(0 lots of 1;") as info:
        _run(tmp_path, gen)
    assert "more lots" in str(info.value)
    db = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.db"))
    store = metadata_store.MetadataStore(db)
    assert [a for a in store.get_artifacts_by_type("Examples") if a.state == a.LIVE] == []


@pytest.mark.slow
def test_a_record_outside_the_schemas_bounds_is_quarantined_with_its_file(tmp_path, png_data):
    """One 64 x 5000 image (the schema allows sides up to 4096) would fail ExampleValidator for every record."""
    import shutil

    from PIL import Image

    data = tmp_path / "png"
    shutil.copytree(png_data[0], data)
    Image.fromarray(np.full((64, 5000), 128, np.uint8)).save(data / "Center" / "too_wide.png")
    with open(data / "manifest.csv", "a") as fh:
        fh.write("Center/too_wide.png,Center,LOTY,01,sort\n")
    gen = WaferExampleGen(data_path=str(data), data_format="png", split_ratios={"train": 0.7, "eval": 0.3}, seed=1)
    artifacts = _run(tmp_path, gen)
    [report] = artifacts["spanet.WaferQuarantineReport"]
    with open(os.path.join(report.uri, REJECTED_CSV)) as fh:
        rows = {r["ref"]: r["reason"] for r in csv.DictReader(fh)}
    assert rows["Center/too_wide.png"] == "declares 5000x64 pixels, more than 4096 a side; not decoded"
    with open(os.path.join(report.uri, SUMMARY_JSON)) as fh:
        assert json.load(fh)["examples_total"] == COUNT  # every good record kept


def test_records_outside_the_schemas_int_bounds_are_named():
    import schemas
    from spanet.data.records import WaferRecord

    bounds = features.int_bounds(schemas.load_schema())
    assert bounds[features.HEIGHT_KEY] == (1, 4096) and bounds[features.WIDTH_KEY] == (1, 4096)
    wide = WaferRecord(image=np.zeros((2, 5000), np.uint8), label="none", ref="x.npz#3")
    assert features.out_of_bounds(wide, bounds) == "width 5000 (shape 2x5000) is outside the schema's range [1, 4096]"
    assert features.out_of_bounds(WaferRecord(image=np.zeros((30, 40), np.uint8), label="none"), bounds) == ""


def test_compiles_for_kubeflow_v2_with_the_curated_schema(tmp_path):
    import schemas

    gen = WaferExampleGen(data_path="gs://bucket/wafers", data_format="png", seed=3)
    statistics = tfx.components.StatisticsGen(examples=gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=schemas.schema_path())
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="wafer-kfp", pipeline_root="gs://bucket/root", components=[gen, statistics, schema, validator]
    )
    out = tmp_path / "pipeline.yaml"
    config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
        default_image="spanet:test", use_pipeline_spec_2_1=True
    )
    tfx.orchestration.experimental.KubeflowV2DagRunner(config=config, output_filename=str(out)).run(
        pipeline, write_out=True
    )
    text = out.read_text()
    assert "title: spanet.WaferQuarantineReport" in text and "title: tfx.Examples" in text
    assert "gs://bucket/wafers" in text and "split_ratios" in text
