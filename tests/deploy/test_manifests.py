"""deploy/ is exactly what pipeline/serving_manifests.py renders from the configuration, its
manifests parse and agree with the pipeline (model name, ports, base path), and TF Serving's config
files parse as TF Serving's own protos."""

from pathlib import Path


import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def configs():
    from pipeline.cluster import ServingDeployConfig
    from pipeline.config import PipelineConfig

    return PipelineConfig(), ServingDeployConfig()


@pytest.fixture(scope="module")
def rendered(configs):
    from pipeline.serving_manifests import render

    return render(*configs)


def _docs(relative):
    return [d for d in yaml.safe_load_all((DEPLOY / relative).read_text()) if d is not None]


def test_committed_files_equal_the_rendering(rendered):
    from pipeline.serving_manifests import stale_files

    assert stale_files(rendered, str(DEPLOY)) == [], "deploy/ is stale: run python pipeline/serving_manifests.py"
    committed = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    assert committed == set(rendered), "deploy/ holds files the renderer does not write (or misses some)"


def test_every_manifest_parses_and_has_kind_name_and_namespace(rendered):
    manifests = [name for name in rendered if name.endswith(".yaml")]
    assert len(manifests) >= 8
    for name in manifests:
        for doc in _docs(name):
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], name
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "spanet", name


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_deployments_agree_with_the_pipeline_config(configs, variant):
    config, deploy = configs
    [deployment] = _docs(f"k8s/{variant}/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "tensorflow/serving:2.16.1" + ("-gpu" if variant == "gpu" else "")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 8500, "http": 8501}
    assert container["readinessProbe"]["httpGet"] == {"path": f"/v1/models/{config.model_name}", "port": 8501}
    args = container["args"]
    for flag in (
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/config/models.config",
        "--enable_batching=true",
        "--batching_parameters_file=/config/batching_parameters.txt",
        "--monitoring_config_file=/config/monitoring.config",
        "--enable_model_warmup=true",
    ):
        assert flag in args
    # one thread per op for each half of the container's cores (spanet.threads): 2 CPUs -> 1, 4 -> 2
    assert f"--tensorflow_intra_op_parallelism={1 if variant == 'cpu' else 2}" in args
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    if variant == "gpu":
        assert resources["limits"]["nvidia.com/gpu"] == "1"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert "nvidia.com/gpu" not in resources["limits"] and "tolerations" not in pod
    # the models volume is mounted where models.config's base path points
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert deploy.base_path(config.model_name) == f"{mounts['models']}/{config.model_name}"
    assert (
        volumes["models"]["persistentVolumeClaim"]["claimName"] == _docs("k8s/models-pvc.yaml")[0]["metadata"]["name"]
    )
    assert volumes["config"]["configMap"]["name"] == _docs("k8s/configmap.yaml")[0]["metadata"]["name"]
    assert mounts["config"] == "/config"
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_service_exposes_grpc_8500_and_rest_8501_of_the_deployment():
    [service] = _docs("k8s/service.yaml")
    [deployment] = _docs("k8s/cpu/deployment.yaml")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 8500, "http": 8501}
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    [monitor] = _docs("k8s/monitoring/servicemonitor.yaml")
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/monitoring/prometheus/metrics",
        "interval": "30s",
    }


def test_models_config_parses_as_tf_servings_model_server_config(configs):
    from tensorflow_serving.config import model_server_config_pb2

    config, deploy = configs
    for text in (
        (DEPLOY / "serving/models.config").read_text(),
        _docs("k8s/configmap.yaml")[0]["data"]["models.config"],
    ):
        parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
        [model] = parsed.model_config_list.config
        assert model.name == config.model_name and model.model_platform == "tensorflow"
        assert model.base_path == deploy.base_path(config.model_name) == "/models/spanet"
        assert model.model_version_policy.latest.num_versions == 2


def _tf_serving_messages():
    """BatchingParameters and MonitoringConfig, built from TF Serving's .proto definitions
    (session_bundle_config.proto, monitoring_config.proto): tensorflow-serving-api ships neither."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tf_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def message(name, fields):
        m = proto.message_type.add(name=name)
        for number, (field_name, kind, type_name, label) in enumerate(fields, start=1):
            m.field.add(name=field_name, number=number, type=kind, type_name=type_name, label=label)

    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    int64 = (f.TYPE_MESSAGE, ".google.protobuf.Int64Value", optional)
    message(
        "BatchingParameters",
        [
            ("max_batch_size",) + int64,
            ("batch_timeout_micros",) + int64,
            ("max_enqueued_batches",) + int64,
            ("num_batch_threads",) + int64,
            ("thread_pool_name", f.TYPE_MESSAGE, ".google.protobuf.StringValue", optional),
            ("allowed_batch_sizes", f.TYPE_INT64, None, repeated),
            ("pad_variable_length_inputs", f.TYPE_BOOL, None, optional),
        ],
    )
    message("PrometheusConfig", [("enable", f.TYPE_BOOL, None, optional), ("path", f.TYPE_STRING, None, optional)])
    message(
        "MonitoringConfig", [("prometheus_config", f.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", optional)]
    )
    pool.Add(proto)
    from google.protobuf import message_factory

    def cls(name):
        descriptor = pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        return message_factory.MessageFactory(pool).GetPrototype(descriptor)

    return cls("BatchingParameters"), cls("MonitoringConfig")


def test_batching_and_monitoring_files_parse_as_tf_serving_protos(configs):
    from components.warmup import WARMUP_BATCH_SIZES

    batching_cls, monitoring_cls = _tf_serving_messages()
    batching = text_format.Parse((DEPLOY / "serving/batching_parameters.txt").read_text(), batching_cls())
    assert list(batching.allowed_batch_sizes) == list(WARMUP_BATCH_SIZES)  # every padded shape is warmed up
    assert batching.max_batch_size.value == batching.allowed_batch_sizes[-1]
    assert batching.batch_timeout_micros.value > 0 and batching.num_batch_threads.value >= 1
    monitoring = text_format.Parse((DEPLOY / "serving/monitoring.config").read_text(), monitoring_cls())
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    with pytest.raises(text_format.ParseError):  # the stand-in protos do reject what TF Serving would
        text_format.Parse("max_batch_size: 32", batching_cls())


def test_kserve_inference_service_reads_the_pushers_base_directory(configs):
    config, deploy = configs
    [isvc] = _docs("kserve/inferenceservice.yaml")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["metadata"]["name"] == config.model_name
    predictor = isvc["spec"]["predictor"]["tensorflow"]
    assert predictor["storageUri"] == "pvc://spanet-models/spanet" and predictor["runtimeVersion"] == "2.16.1"


def test_an_object_store_rendering_points_everything_at_the_pushers_uri():
    from pipeline.cluster import ServingDeployConfig
    from pipeline.config import PipelineConfig
    from pipeline.serving_manifests import render
    from tensorflow_serving.config import model_server_config_pb2

    uri = "gs://wafer-bucket/spanet/serving/wafer-net"
    config = PipelineConfig(model_name="wafer-net", serving_base_dir=uri)
    files = render(config, ServingDeployConfig(model_base_uri=config.serving_dir))
    assert "k8s/models-pvc.yaml" not in files
    model = text_format.Parse(
        files["serving/models.config"], model_server_config_pb2.ModelServerConfig()
    ).model_config_list.config[0]
    assert (model.name, model.base_path) == ("wafer-net", uri)
    deployment = yaml.safe_load(files["k8s/gpu/deployment.yaml"])
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/wafer-net"
    assert all(v["name"] != "models" for v in deployment["spec"]["template"]["spec"]["volumes"])
    assert yaml.safe_load(files["kserve/inferenceservice.yaml"])["spec"]["predictor"]["tensorflow"]["storageUri"] == uri


def test_dockerfile_builds_on_tfx_1_16_with_the_pinned_set_and_the_package():
    from pipeline.serving_manifests import IMAGE_FILES, IMAGE_PACKAGES

    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM gcr.io/tfx-oss-public/tfx:1.16.0"]
    assert "RUN python -m pip install -r requirements.lock" in lines
    text = "\n".join(lines)
    assert "pip install --no-deps ." in text
    for name in IMAGE_PACKAGES + IMAGE_FILES:
        assert (REPO / name).exists(), f"the Dockerfile copies {name}, which the repository lacks"
        assert f" {name}" in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore and all(f"!{name}" in ignore for name in IMAGE_PACKAGES + IMAGE_FILES)  # small context
    setup = (REPO / "setup.py").read_text()
    for package in IMAGE_PACKAGES:
        assert f'"{package}"' in setup  # installed by setup.py's find_packages


def test_check_mode_reports_a_stale_folder(tmp_path, capsys):
    from pipeline.serving_manifests import main

    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "serving/models.config").write_text("edited by hand\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "stale under" in err and "serving/models.config" in err and len(err.strip().splitlines()) == 1


def test_request_logging_renders_tf_servings_logging_config_on_a_mounted_volume(configs):
    from pipeline.serving_manifests import RequestLogging, main, render
    from tensorflow_serving.config import model_server_config_pb2

    config, deploy = configs
    logging = RequestLogging("tfrecord_file", sampling_rate=0.05)
    files = render(config, deploy, logging)
    for text in (files["serving/models.config"], yaml.safe_load(files["k8s/configmap.yaml"])["data"]["models.config"]):
        [model] = text_format.Parse(text, model_server_config_pb2.ModelServerConfig()).model_config_list.config
        log_config = model.logging_config
        assert log_config.sampling_config.sampling_rate == 0.05
        assert log_config.log_collector_config.type == "tfrecord_file"
        assert log_config.log_collector_config.filename_prefix == "/request-logs/spanet/prediction_log"
    for variant in ("cpu", "gpu"):
        pod = yaml.safe_load(files[f"k8s/{variant}/deployment.yaml"])["spec"]["template"]["spec"]
        [container] = pod["containers"]
        mount = {m["name"]: m for m in container["volumeMounts"]}["request-logs"]
        assert mount["mountPath"] == "/request-logs" and not mount.get("readOnly")  # the collector writes there
        volume = {v["name"]: v for v in pod["volumes"]}["request-logs"]
        pvc = yaml.safe_load(files["k8s/request-logs-pvc.yaml"])
        assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    # the default rendering (the committed deploy/, stock TF Serving image) has none: that image refuses any
    # logging_config ("No request-logger-creator provided.") because it registers no LogCollector
    [model] = text_format.Parse(
        (DEPLOY / "serving/models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    ).model_config_list.config
    assert not model.HasField("logging_config")
    assert main(["--out", "/nonexistent", "--request-log-collector", "x", "--request-log-sampling", "1.5"]) == 2


@pytest.mark.parametrize("cpu, cores", [("2", 2), ("4", 4), ("1.5", 1), ("500m", 1), ("2500m", 2)])
def test_a_containers_cpu_request_in_whole_cores(cpu, cores):
    from pipeline.cluster import Resources

    assert Resources(cpu=cpu, memory="1Gi").whole_cores() == cores


def test_a_cpu_request_that_is_no_quantity_is_an_error_that_names_it():
    from pipeline.cluster import Resources

    with pytest.raises(ValueError, match="cpu must be a Kubernetes CPU quantity .* got 'two'"):
        Resources(cpu="two", memory="1Gi").whole_cores()
