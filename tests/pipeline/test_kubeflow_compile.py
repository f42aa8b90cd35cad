"""pipeline/run_kubeflow.py compiles the pipeline to a KFP v2 spec that kfp itself loads and that
carries the configured image, root, model options, Trainer resources and GPU scheduling (a GPU by
default), and the run-time parameters with their defaults; compiling is deterministic."""

import json


import pytest
import yaml
from google.protobuf import json_format

IMAGE = "registry.example.com/ml/spanet-tfx:1.2.3"
GPU_IMAGE = "registry.example.com/ml/spanet-tfx:1.2.3-gpu"
ROOT = "gs://wafer-bucket/spanet/root"
DATA = "gs://wafer-bucket/wafers"
SERVING_DIR = "gs://wafer-bucket/spanet/serving/spanet"
GPU_LABEL = ("cloud.google.com/gke-accelerator", "nvidia-tesla-t4")
ARGS = [
    "--image",
    IMAGE,
    "--pipeline-root",
    ROOT,
    "--data",
    DATA,
    "--format",
    "png",
    "--serving-dir",
    SERVING_DIR,
    "--classes",
    "good,particle,bridge,residue",
    "--normal-class",
    "good",
    "--gpus",
    "2",
    "--trainer-cpu",
    "8",
    "--trainer-memory-gb",
    "30",
    "--node-selector",
    "=".join(GPU_LABEL),
    "--toleration",
    "nvidia.com/gpu:NoSchedule",
    "--toleration",
    "pool=gpu:NoExecute",
    "--trainer-image",
    GPU_IMAGE,
    # The model options run_local.py takes (pipeline/arguments.py), each away from its default.
    "--model",
    "ghostnet",
    "--width",
    "0.75",
    "--r",
    "0.25",
    "--epochs",
    "7",
    "--batch-size",
    "16",
    "--image-size",
    "48",
    "--channels",
    "3",
    "--model-name",
    "wafer-net",
    "--min-defect-recall",
    "0.97",
    "--max-false-alarm-rate",
    "0.08",
    "--min-slice-support",
    "12",
    "--runner=DataflowRunner",
    "--project=fab-project",
    "--region=europe-west4",
]
#: The run-time parameters and the defaults ARGS compile in.
PARAMETERS = {
    "data_path": ("STRING", DATA),
    "epochs": ("NUMBER_INTEGER", 7),
    "min_defect_recall": ("NUMBER_DOUBLE", 0.97),
}
#: The components that take each parameter.
PARAMETER_USERS = {
    "data_path": {"WaferExampleGen"},
    "epochs": {"Trainer"},
    "min_defect_recall": {"Evaluator", "EvaluationReporter"},
}
#: Node id -> the nodes it must depend on (dependentTasks), as create_pipeline wires them.
DEPENDENCIES = {
    "WaferExampleGen": set(),
    "ClassSchemaGen": set(),
    "StatisticsGen": {"WaferExampleGen"},
    "ExampleValidator": {"StatisticsGen", "ClassSchemaGen"},
    "SchemaAnomalyGate": {"ExampleValidator", "ClassSchemaGen"},
    "Transform": {"WaferExampleGen", "ClassSchemaGen", "SchemaAnomalyGate"},
    "Trainer": {"WaferExampleGen", "Transform", "ClassSchemaGen"},  # raw examples (die-level augmentation) + the graph
    "Evaluator": {"WaferExampleGen", "Trainer", "ClassSchemaGen", "latest_blessed_model_resolver-model-resolver"},
    "Pusher": {"Trainer", "Evaluator"},
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The pipeline compiled twice through the command line, plus the Vertex JSON."""
    from pipeline.run_kubeflow import main

    out = tmp_path_factory.mktemp("kfp")
    paths = {"first": out / "a.yaml", "second": out / "b.yaml", "vertex": out / "vertex.json"}
    assert main(["--output", str(paths["first"]), "--vertex-json", str(paths["vertex"])] + ARGS) == 0
    assert main(["--output", str(paths["second"])] + ARGS) == 0
    return paths


def _documents(path):
    with open(path) as handle:
        return list(yaml.safe_load_all(handle))


def test_kfp_loaders_and_the_pipeline_spec_proto_accept_the_spec(compiled):
    from kfp import components
    from kfp.client import client as kfp_client
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec_dict, platform_dict = _documents(compiled["first"])
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())
    assert spec.schema_version == "2.1.0" and spec.pipeline_info.name == "spanet"
    json_format.ParseDict(platform_dict, pipeline_spec_pb2.PlatformSpec())
    package = kfp_client._extract_pipeline_yaml(str(compiled["first"]))  # what create_run_from_pipeline_package reads
    assert package.pipeline_spec == spec and "kubernetes" in package.platform_spec.platforms
    assert components.load_component_from_file(str(compiled["first"])).name == "spanet"


def test_every_component_is_there_with_its_dependencies(compiled):
    spec, _ = _documents(compiled["first"])
    tasks = spec["root"]["dag"]["tasks"]
    for node, upstream in DEPENDENCIES.items():
        assert node in tasks, f"{node} missing from the compiled DAG"
        assert set(tasks[node].get("dependentTasks", [])) == upstream, node
    resolvers = {name for name in tasks if name.startswith("latest_blessed_model_resolver")}
    assert resolvers == {
        "latest_blessed_model_resolver-model-resolver",
        "latest_blessed_model_resolver-model-blessing-resolver",
    }
    assert set(spec["deploymentSpec"]["executors"]) >= {f"{node}_executor" for node in DEPENDENCIES}


def test_image_root_data_serving_dir_and_beam_args_are_the_configured_ones(compiled):
    spec, _ = _documents(compiled["first"])
    assert spec["defaultPipelineRoot"] == ROOT
    executors = spec["deploymentSpec"]["executors"]
    containers = [e["container"] for name, e in executors.items() if "container" in e and name != "Trainer_executor"]
    assert containers and {c["image"] for c in containers} == {IMAGE}
    assert executors["Trainer_executor"]["container"]["image"] == GPU_IMAGE  # --trainer-image: the CUDA build
    text = compiled["first"].read_text()
    assert DATA in text and SERVING_DIR in text
    trainer = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert "--runner=DataflowRunner" in trainer["args"] and "--project=fab-project" in trainer["args"]
    assert "--direct_running_mode=multi_processing" not in trainer["args"]  # a named runner replaces the local ones
    # component code is referenced by import path inside the image, never as a module file
    assert "components.trainer.run_fn" in text and "components.transform.preprocessing_fn" in text
    for node in ("Trainer", "Transform"):
        assert "module_file" not in spec["components"][node]["inputDefinitions"]["parameters"]


def test_the_trainer_alone_gets_the_gpus_cpu_memory_and_gpu_node_scheduling(compiled):
    spec, platform = _documents(compiled["first"])
    executors = spec["deploymentSpec"]["executors"]
    resources = executors["Trainer_executor"]["container"]["resources"]
    assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "2"}
    assert resources["cpuLimit"] == resources["cpuRequest"] == 8.0
    assert resources["memoryLimit"] == resources["memoryRequest"] == 30.0
    assert [name for name, e in executors.items() if "resources" in e.get("container", {})] == ["Trainer_executor"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == {"Trainer_executor"}
    assert k8s["Trainer_executor"]["nodeSelector"] == {"labels": dict([GPU_LABEL])}
    assert k8s["Trainer_executor"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoExecute"},
    ]


def test_compiling_twice_gives_the_same_spec(compiled):
    assert compiled["first"].read_bytes() == compiled["second"].read_bytes()


def test_vertex_pipeline_job_json(compiled):
    job = json.loads(compiled["vertex"].read_text())
    assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    assert job["pipelineSpec"] == _documents(compiled["first"])[0]
    assert job["displayName"] == "spanet"


def test_pvc_storage_mounts_the_models_volume_in_the_pushers_pod(tmp_path):
    from pipeline.cluster import KubeflowConfig
    from pipeline.kubeflow import kubernetes_platform
    from pipeline.run_kubeflow import configs_from_args, parse_args

    config, kubeflow = configs_from_args(*parse_args(["--serving-pvc", "spanet-models", "--model-name", "wafers"]))
    assert config.serving_dir == "/models/wafers" and config.module_config.model_name == "wafers"
    executors = kubernetes_platform(kubeflow)["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors == {"Pusher_executor": {"pvcMount": [{"constant": "spanet-models", "mountPath": "/models"}]}}
    assert kubernetes_platform(KubeflowConfig()) == {}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--pipeline-root", "relative/root"], "--pipeline-root 'relative/root' must be shared storage"),
        (["--gpus", "-1"], "trainer GPUs must be an integer >= 0"),
        (["--trainer-memory-gb", "0"], "trainer memory gb must be > 0"),
        (["--node-selector", "gpu"], "node selector 'gpu' must be KEY=VALUE"),
        (["--toleration", "nvidia.com/gpu:Sometimes"], "toleration effect 'Sometimes' must be one of"),
        (["--serving-dir", "gs://b/s", "--serving-pvc", "p"], "give --serving-dir or --serving-pvc, not both"),
        (["--submit"], "--submit needs --host URL"),
        (["stray"], "unexpected argument(s) ['stray']"),
    ],
)
def test_bad_options_are_named_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    from pipeline.run_kubeflow import main

    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    assert main(["--output", str(tmp_path / "p.yaml")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "p.yaml").exists()


def test_the_configured_classes_reach_the_schema_and_the_gate(compiled):
    text = compiled["first"].read_text()
    assert (
        '[\\"good\\", \\"particle\\", \\"bridge\\", \\"residue\\"]' in text
        or '["good", "particle", "bridge", "residue"]' in text
    )
    for name in ("particle", "bridge", "residue"):
        assert f'\\"label\\": \\"{name}\\"' in text or f'"label": "{name}"' in text  # a gated class slice


def test_remote_data_without_classes_is_refused_with_one_line(tmp_path, capsys):
    from pipeline.run_kubeflow import main

    args = [a for a in ARGS]
    i = args.index("--classes")
    del args[i : i + 4]  # --classes ... --normal-class good
    assert main(["--output", str(tmp_path / "x.yaml")] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"--data {DATA!r} cannot be read here to find its classes: give --classes A,B,C")
    assert not (tmp_path / "x.yaml").exists()


def test_multilabel_spec_from_local_data_carries_the_patterns_to_transform_and_the_combinations_to_the_schema(tmp_path):
    import numpy as np

    from pipeline.run_kubeflow import main
    from spanet.data.imageio import encode_png

    data = tmp_path / "data"
    for label, count in {"none": 40, "Center": 30, "Loc": 30, "Center+Loc": 30}.items():
        (data / label).mkdir(parents=True)
        for n in range(count):  # each image its own split unit
            (data / label / f"{n:03d}.png").write_bytes(encode_png(np.full((8, 8), 128, np.uint8)))
    args = [a for a in ARGS]
    args[args.index("--data") + 1] = str(data)
    args[args.index("--classes") + 1] = "Center,Loc,none"
    args[args.index("--normal-class") + 1] = "none"
    output = tmp_path / "ml.yaml"
    assert main(["--output", str(output), "--mixed", "multilabel"] + args) == 0
    text = output.read_text().replace('\\"', '"')
    assert '"patterns": ["Center", "Loc"]' in text  # Transform's and the Trainer's custom_config
    assert '["Center", "Center+Loc", "Loc", "none"]' in text  # ClassSchemaGen: the label values
    assert main(["--output", str(tmp_path / "x.yaml"), "--mixed", "multilabel"] + ARGS) == 2  # remote data


def _custom_config(spec, node):
    value = spec["root"]["dag"]["tasks"][node]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"]
    return json.loads(value)


def test_the_model_options_land_in_the_compiled_custom_config_and_gate(compiled):
    spec, _ = _documents(compiled["first"])
    trainer = _custom_config(spec, "Trainer")
    assert {k: trainer["training"][k] for k in ("model", "width", "r", "epochs", "batch_size")} == {
        "model": "ghostnet",
        "width": 0.75,
        "r": 0.25,
        "epochs": 7,
        "batch_size": 16,
    }
    assert (trainer["image"]["height"], trainer["image"]["width"], trainer["image"]["channels"]) == (48, 48, 3)
    assert trainer["image"]["normal_class"] == "good" and trainer["model_name"] == "wafer-net"
    assert _custom_config(spec, "Transform")["image"] == trainer["image"]
    eval_config = spec["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["parameters"]["eval_config"]
    from components.eval_summary import gate_settings
    import tensorflow_model_analysis as tfma

    settings = gate_settings(json_format.Parse(eval_config["runtimeValue"]["constant"], tfma.EvalConfig()))
    assert (settings["min_defect_recall"], settings["max_false_alarm_rate"], settings["min_slice_support"]) == (
        0.97,
        0.08,
        12,
    )


def test_the_run_time_parameters_are_root_inputs_with_their_defaults_wired_into_the_components(compiled):
    spec, _ = _documents(compiled["first"])
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert {name: (p["parameterType"], p["defaultValue"]) for name, p in declared.items()} == PARAMETERS
    assert all(p["isOptional"] for p in declared.values())
    tasks = spec["root"]["dag"]["tasks"]
    for name, users in PARAMETER_USERS.items():
        wired = {
            node
            for node, task in tasks.items()
            for key, value in task.get("inputs", {}).get("parameters", {}).items()
            if value.get("componentInputParameter") == name
        }
        assert wired == users, name
        for node in users:
            assert (
                spec["components"][node]["inputDefinitions"]["parameters"][name]["parameterType"] == PARAMETERS[name][0]
            )


def test_kfp_s_loader_reads_the_defaults_and_an_override_compiles_through_kfp(compiled, tmp_path):
    """kfp 2.5's own loader sees the parameters as optional inputs with their defaults; a pipeline that
    runs the package with other values compiles, and kfp's type check refuses a value of the wrong type."""
    from kfp import compiler, components, dsl

    package = components.load_component_from_file(str(compiled["first"]))
    inputs = package.component_spec.inputs
    assert {name: (inputs[name].default, inputs[name].optional) for name in PARAMETERS} == {
        name: (default, True) for name, (_, default) in PARAMETERS.items()
    }

    @dsl.pipeline(name="spanet-override")
    def override(epochs: int = 3):
        package(epochs=epochs, min_defect_recall=0.95, data_path="gs://wafer-bucket/other")

    compiler.Compiler().compile(override, str(tmp_path / "override.yaml"))
    outer = next(yaml.safe_load_all((tmp_path / "override.yaml").read_text()))
    arguments = outer["root"]["dag"]["tasks"]["spanet"]["inputs"]["parameters"]
    assert arguments["epochs"] == {"componentInputParameter": "epochs"}
    assert arguments["min_defect_recall"]["runtimeValue"]["constant"] == 0.95
    assert arguments["data_path"]["runtimeValue"]["constant"] == "gs://wafer-bucket/other"
    with pytest.raises(Exception, match="epochs"):

        @dsl.pipeline(name="spanet-bad")
        def bad():
            package(epochs="many")


@pytest.fixture(scope="module")
def minimal(tmp_path_factory):
    """The pipeline compiled with nothing but what a cluster needs: by default, and with --gpus 0."""
    from pipeline.run_kubeflow import main

    out = tmp_path_factory.mktemp("minimal")
    base = ["--pipeline-root", ROOT, "--data", DATA, "--classes", "none,Scratch", "--serving-dir", SERVING_DIR]
    paths = {"default": out / "default.yaml", "cpu": out / "cpu.yaml"}
    assert main(["--output", str(paths["default"])] + base) == 0
    assert main(["--output", str(paths["cpu"]), "--gpus", "0"] + base) == 0
    return {name: _documents(path)[0] for name, path in paths.items()}


def test_the_trainer_gets_one_gpu_by_default_and_none_with_gpus_0(minimal):
    executors = minimal["default"]["deploymentSpec"]["executors"]
    resources = executors["Trainer_executor"]["container"]["resources"]
    assert resources == {"accelerator": {"type": "nvidia.com/gpu", "count": "1"}}
    cpu = minimal["cpu"]["deploymentSpec"]["executors"]
    assert not any("resources" in e.get("container", {}) for e in cpu.values())
    defaults = minimal["default"]["root"]["inputDefinitions"]["parameters"]
    from components.config import TrainingConfig
    from components.evaluation import GateConfig

    assert defaults["epochs"]["defaultValue"] == TrainingConfig.epochs
    assert defaults["min_defect_recall"]["defaultValue"] == GateConfig.min_defect_recall


def test_the_gpu_image_is_the_pipeline_image_plus_cuda_for_the_locked_tensorflow():
    """deploy/Dockerfile.gpu keeps every instruction of the rendered deploy/Dockerfile, in order, and adds
    tensorflow[and-cuda] at the lock's TensorFlow version, constrained by the lock."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]

    def instructions(name):
        return [line for line in (repo / "deploy" / name).read_text().splitlines() if not line.startswith("#")]

    cpu, gpu = instructions("Dockerfile"), instructions("Dockerfile.gpu")
    added = [line for line in gpu if line not in cpu]
    assert [line for line in gpu if line in cpu] == cpu
    [version] = re.findall(r"^tensorflow==(\S+)", (repo / "requirements.lock").read_text(), re.MULTILINE)
    assert added[0] == f'RUN python -m pip install -c requirements.lock "tensorflow[and-cuda]=={version}" \\'
    assert f"tf.__version__ == '{version}'" in added[1] and "is_built_with_cuda()" in added[1]
    ignore = (repo / "deploy" / "Dockerfile.gpu.dockerignore").read_text().splitlines()
    assert ignore[1:] == (repo / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()[1:]
