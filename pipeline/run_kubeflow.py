"""Compiles the spanet pipeline for Kubeflow Pipelines v2 and, optionally, submits a run.

    python pipeline/run_kubeflow.py --output spanet_kfp.yaml \\
        --image REGISTRY/spanet-tfx:0.1.0 --trainer-image REGISTRY/spanet-tfx:0.1.0-gpu \\
        --pipeline-root gs://BUCKET/spanet/root \\
        --data gs://BUCKET/wafers --format png --serving-dir gs://BUCKET/spanet/serving/spanet \\
        --gpus 1 --trainer-cpu 8 --trainer-memory-gb 32 \\
        --node-selector cloud.google.com/gke-accelerator=nvidia-tesla-t4 --toleration nvidia.com/gpu:NoSchedule
    python pipeline/run_kubeflow.py --output spanet_kfp.yaml ... --submit --host http://localhost:8080 \\
        --param epochs=60 --param min_defect_recall=0.995
    python pipeline/run_kubeflow.py --output spanet_kfp.yaml --vertex-json spanet_vertex.json \\
        --gpu-type NVIDIA_TESLA_T4 ...

The spec is the same ``create_pipeline(config)`` the local runner runs, built from the same
options (``pipeline/arguments.py``); component code is referenced by import path inside the image.
The Trainer gets one GPU unless ``--gpus`` says otherwise (``--gpus 0``: CPU), in ``--trainer-image``
if given (``deploy/Dockerfile.gpu``). The data path, the epochs and the gate's minimum defect recall
are run-time parameters whose defaults are the compiled values; ``--param KEY=VALUE`` sets them for
the submitted run. Unknown ``--options`` are Beam arguments (e.g.
``--runner=DataflowRunner --project=P --region=R --temp_location=gs://...``). See docs/kubeflow.md.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    # Run as a script: import the project's packages, not this folder's sibling modules.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import pipeline.startup  # noqa: E402,F401  (before TensorFlow is imported)

import argparse  # noqa: E402
from typing import List, Optional, Sequence, Tuple  # noqa: E402

from pipeline.arguments import add_pipeline_arguments, apply_beam_arguments, apply_pipeline_arguments  # noqa: E402
from pipeline.classes import classes_for_compile  # noqa: E402
from pipeline.cluster import MODELS_MOUNT, DEFAULT_PIPELINE_IMAGE, NVIDIA_GPU, KubeflowConfig, Toleration, parse_label  # noqa: E402
from pipeline.config import DATA_PATH_PARAMETER, RUNTIME_PARAMETERS, PipelineConfig, stray_arguments  # noqa: E402
from pipeline.kfp_submit import (  # noqa: E402
    HOST_ENV,
    TOKEN_ENV,
    ParameterError,
    SubmitError,
    SubmitRequest,
    load_package,
    run_arguments,
    submit,
)

PROG = "run_kubeflow.py"
#: On a cluster the root must be shared storage, not a local folder.
REMOTE_ROOT_SCHEMES = ("gs://", "s3://", "minio://", "/")


def build_parser() -> argparse.ArgumentParser:
    """The compiler's options: those of pipeline.arguments, the image, root, Trainer resources and submission."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Compile the spanet TFX pipeline to a Kubeflow Pipelines v2 spec (YAML, schema 2.1); optionally submit it."
        ),
        epilog="Unknown --options are passed to Apache Beam (e.g. --runner=DataflowRunner --project=P --region=R).",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--output", default="spanet_kfp.yaml", help="pipeline spec YAML for kfp (default: %(default)s)")
    out.add_argument("--vertex-json", help="also write the PipelineJob JSON for Vertex AI Pipelines")
    pipe = parser.add_argument_group("pipeline")
    pipe.add_argument(
        "--image", default=DEFAULT_PIPELINE_IMAGE, help="container image of the components (default: %(default)s)"
    )
    pipe.add_argument(
        "--pipeline-root", help="pipeline root on shared storage, e.g. gs://bucket/spanet/root or s3://bucket/root"
    )
    pipe.add_argument(
        "--pipeline-name", default=PipelineConfig.pipeline_name, help="pipeline name (default: %(default)s)"
    )
    pipe.add_argument(
        "--serving-dir",
        help="the Pusher's base directory (TF Serving's model base path), e.g. gs://bucket/serving/spanet",
    )
    pipe.add_argument(
        "--serving-pvc",
        help=f"mount this PVC at {MODELS_MOUNT} in the Pusher's pod and push to {MODELS_MOUNT}/<model name>",
    )
    model = parser.add_argument_group("data, model, classes and gate (as run_local.py)")
    add_pipeline_arguments(
        model,
        data_help="data set path readable from the cluster (gs://, s3:// or a mounted path); "
        f"the default of the run-time parameter {DATA_PATH_PARAMETER!r}",
    )
    trainer = parser.add_argument_group("trainer resources and scheduling")
    trainer.add_argument(
        "--gpus",
        type=int,
        default=KubeflowConfig.trainer_gpus,
        help="GPUs for the Trainer; 0: train on CPU (default: %(default)s)",
    )
    trainer.add_argument(
        "--trainer-image",
        help="the Trainer's image, built from deploy/Dockerfile.gpu for GPUs (default: --image)",
    )
    trainer.add_argument(
        "--gpu-type", default=NVIDIA_GPU, help="accelerator type (default: %(default)s; Vertex: e.g. NVIDIA_TESLA_T4)"
    )
    trainer.add_argument("--trainer-cpu", type=float, help="CPU cores for the Trainer (request = limit)")
    trainer.add_argument("--trainer-memory-gb", type=float, help="memory for the Trainer in GB (request = limit)")
    trainer.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node label for the Trainer's pod (repeatable)",
    )
    trainer.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE][:EFFECT]",
        help="toleration for the Trainer's pod (repeatable)",
    )
    run = parser.add_argument_group("submit")
    run.add_argument("--submit", action="store_true", help="upload the spec and start a run")
    run.add_argument(
        "--host",
        default=os.environ.get(HOST_ENV),
        help=f"KFP API endpoint, e.g. http://localhost:8080 (default: ${HOST_ENV})",
    )
    run.add_argument("--experiment", default="spanet", help="experiment name (default: %(default)s)")
    run.add_argument("--run-name", help="run name (default: <package> <timestamp>)")
    run.add_argument("--namespace", help="Kubernetes namespace / Kubeflow profile (multi-user deployments)")
    run.add_argument("--auth-token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default: ${TOKEN_ENV})")
    run.add_argument("--ui-host", help="UI base URL for the printed run link (default: the host)")
    run.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each request (default: %(default)s)"
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a run-time parameter of the run ({', '.join(RUNTIME_PARAMETERS)}; repeatable; "
        "default: the compiled values)",
    )
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    """The parsed options and the arguments left for Beam."""
    return build_parser().parse_known_args(argv)


def configs_from_args(args: argparse.Namespace, beam_args: List[str]) -> Tuple[PipelineConfig, KubeflowConfig]:
    """The pipeline and the cluster configuration for these arguments (ValueError names a bad one)."""
    if args.pipeline_root and not args.pipeline_root.startswith(REMOTE_ROOT_SCHEMES):
        raise ValueError(
            f"--pipeline-root {args.pipeline_root!r} must be shared storage "
            "(gs://, s3://, minio:// or an absolute mounted path)"
        )
    if args.serving_dir and args.serving_pvc:
        raise ValueError("give --serving-dir or --serving-pvc, not both")
    # model_name also reaches the Trainer (PipelineConfig.module_config): its warm-up requests carry it.
    config = apply_pipeline_arguments(PipelineConfig(pipeline_name=args.pipeline_name), args)
    if args.pipeline_root:
        config = config.with_updates(pipeline_root_override=args.pipeline_root)
    if args.serving_pvc:
        config = config.with_updates(serving_base_dir=f"{MODELS_MOUNT}/{args.model_name}")
    elif args.serving_dir:
        config = config.with_updates(serving_base_dir=args.serving_dir)
    config = apply_beam_arguments(config, beam_args)
    kubeflow = KubeflowConfig(
        image=args.image,
        trainer_image=args.trainer_image,
        trainer_gpus=args.gpus,
        gpu_type=args.gpu_type,
        trainer_cpu=args.trainer_cpu,
        trainer_memory_gb=args.trainer_memory_gb,
        node_selector=tuple(parse_label(text) for text in args.node_selector),
        tolerations=tuple(Toleration.parse(text) for text in args.toleration),
        serving_pvc=args.serving_pvc,
    )
    return config, kubeflow


def warnings_for(config: PipelineConfig, kubeflow: KubeflowConfig) -> List[str]:
    """Settings that compile but will not work on a cluster as they are."""
    notes = []
    if not config.pipeline_root_override:
        notes.append(
            f"no --pipeline-root: the spec uses {config.pipeline_root!r}, which the cluster's pods cannot share"
        )
    if not config.data_path:
        notes.append("no --data: WaferExampleGen would read the embedded default data path, which exists only locally")
    if not config.serving_base_dir:
        notes.append(
            f"no --serving-dir or --serving-pvc: the Pusher would write to {config.serving_dir!r} inside its pod"
        )
    if kubeflow.image == DEFAULT_PIPELINE_IMAGE:
        notes.append(
            f"--image is the default {DEFAULT_PIPELINE_IMAGE!r}: "
            "push deploy/Dockerfile's image to your registry and name it"
        )
    if kubeflow.trainer_gpus and not kubeflow.trainer_image:
        notes.append(
            f"--gpus {kubeflow.trainer_gpus} without --trainer-image: the Trainer runs in --image, "
            "which must then be the CUDA build of deploy/Dockerfile.gpu (or pass --gpus 0 to train on CPU)"
        )
    return notes


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, beam_args = parse_args(argv)
    unknown = stray_arguments(tuple(beam_args))
    if unknown:
        print(f"{PROG}: unexpected argument(s) {list(unknown)}; options start with --", file=sys.stderr)
        return 2
    try:
        config, kubeflow = configs_from_args(args, beam_args)
        config = classes_for_compile(config)
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    if args.submit and not args.host:
        print(f"{PROG}: --submit needs --host URL (or {HOST_ENV})", file=sys.stderr)
        return 2
    if args.param and not args.submit:
        print(f"{PROG}: --param sets an argument of a run: it needs --submit", file=sys.stderr)
        return 2

    from pipeline.kubeflow import compile_pipeline

    for note in warnings_for(config, kubeflow):
        print(f"{PROG}: note: {note}", file=sys.stderr)
    try:
        compile_pipeline(config, kubeflow, args.output, args.vertex_json)
    except (OSError, ValueError) as error:
        print(f"{PROG}: cannot compile the pipeline: {error}", file=sys.stderr)
        return 1
    print(
        f"Compiled pipeline {config.pipeline_name!r} -> {args.output}"
        + (f" and {args.vertex_json}" if args.vertex_json else "")
    )
    print(
        f"  image {kubeflow.image}; root {config.pipeline_root}; Trainer GPUs {kubeflow.trainer_gpus}"
        + (f" ({kubeflow.gpu_type})" if kubeflow.trainer_gpus else "")
    )
    if not args.submit:
        return 0
    try:
        arguments = run_arguments(load_package(args.output), args.param)
        config.with_runtime_arguments(arguments)  # the values the typed configuration accepts
    except ParameterError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"{PROG}: --param {error}", file=sys.stderr)
        return 2
    except SubmitError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    request = SubmitRequest(
        package_path=args.output,
        host=args.host,
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        auth_token=args.auth_token,
        pipeline_root=config.pipeline_root,
        ui_host=args.ui_host,
        timeout_seconds=args.timeout,
        arguments=arguments,
    )
    try:
        result = submit(request)
    except SubmitError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    if arguments:
        print("  arguments " + ", ".join(f"{name}={value!r}" for name, value in arguments.items()))
    print(f"Run started: {result.run_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
