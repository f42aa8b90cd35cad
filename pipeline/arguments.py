"""The data, model, class and gate options both runners take, and how they become a PipelineConfig.

``pipeline/run_local.py`` and ``pipeline/run_kubeflow.py`` add these options with
:func:`add_pipeline_arguments` and apply them with :func:`apply_pipeline_arguments`, so an option
means the same in both and its default is the typed configuration's (``PipelineConfig``,
``TrainingConfig``, ``ImageConfig``, ``GateConfig``). A value the configuration refuses is an
:class:`OptionError` whose one line names the option.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from typing import Any, Callable, Sequence

from components.config import ImageConfig, TrainingConfig
from components.evaluation import GateConfig
from pipeline.classes import add_class_arguments, apply_class_arguments
from pipeline.config import LOCAL_BEAM_ARGS, PipelineConfig
from spanet.data.readers import FORMATS

#: --option -> TrainingConfig field, in the order they are applied.
TRAINING_OPTIONS = (
    ("--model", "model"),
    ("--width", "width"),
    ("--r", "r"),
    ("--epochs", "epochs"),
    ("--batch-size", "batch_size"),
)
#: --option -> GateConfig field.
GATE_OPTIONS = (
    ("--min-defect-recall", "min_defect_recall"),
    ("--max-false-alarm-rate", "max_false_alarm_rate"),
    ("--min-slice-support", "min_slice_support"),
)


class OptionError(ValueError):
    """An option value the configuration refuses; ``str(error)`` is one line that names the option."""


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_pipeline_arguments(parser: Any, data_help: str) -> None:
    """Adds the data, model, class, gate and cache options to ``parser`` (a parser or an argument group)."""
    parser.add_argument("--data", help=data_help)
    parser.add_argument(
        "--format", default=PipelineConfig.data_format, choices=FORMATS, help="data format (default: %(default)s)"
    )
    parser.add_argument(
        "--model",
        default=TrainingConfig.model,
        help="network: spanet, ghostnet, mobilenet_v2, mobilenet_v3, resnet50_gc (default: %(default)s)",
    )
    parser.add_argument(
        "--width",
        type=float,
        help=f"width multiplier (1.0 = the paper's 5.1M-parameter network; default: {TrainingConfig.width})",
    )
    parser.add_argument(
        "--r", type=float, help=f"composition ratio of self-proliferation, in (0, 1] (default: {TrainingConfig.r})"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"maximum training epochs; early stopping may end sooner (default: {TrainingConfig.epochs})",
    )
    parser.add_argument("--batch-size", type=int, help=f"training batch size (default: {TrainingConfig.batch_size})")
    parser.add_argument(
        "--image-size", type=int, help=f"model input height and width in pixels (default: {ImageConfig.height})"
    )
    parser.add_argument(
        "--channels",
        type=int,
        choices=[1, 3],
        help=f"1 for wafer maps / grey images, 3 for RGB (default: {ImageConfig.channels})",
    )
    add_class_arguments(parser)
    parser.add_argument(
        "--model-name", default=PipelineConfig.model_name, help="name the model is served under (default: %(default)s)"
    )
    parser.add_argument(
        "--min-defect-recall",
        type=float,
        help="gate: the least defect recall on the test split (overall its 95%% lower bound, per class and "
        f"feature slice the point value; default: {GateConfig.min_defect_recall})",
    )
    parser.add_argument(
        "--max-false-alarm-rate",
        type=float,
        help=f"gate: the most normal wafers flagged, as a share (default: {GateConfig.max_false_alarm_rate})",
    )
    parser.add_argument(
        "--min-slice-support",
        type=int,
        help="gate: defective wafers a class or feature slice needs before its recall is judged "
        f"(default: {GateConfig.min_slice_support})",
    )
    parser.add_argument("--no-cache", action="store_true", help="re-run every component")


def _checked(flag: str, value: Any, update: Callable[[], PipelineConfig]) -> PipelineConfig:
    """``update()``, with a ValueError turned into an OptionError naming ``flag``."""
    try:
        return update()
    except ValueError as error:
        raise OptionError(f"{flag} {value}: {error}") from None


def apply_pipeline_arguments(config: PipelineConfig, args: argparse.Namespace) -> PipelineConfig:
    """``config`` with the options of :func:`add_pipeline_arguments` applied (OptionError names a bad one)."""
    flag = "--normal-class" if args.classes is None else "--classes/--normal-class"
    config = _checked(flag, args.normal_class, lambda: apply_class_arguments(config, args))
    config = config.with_updates(model_name=args.model_name, enable_cache=not args.no_cache)
    for flag, name in TRAINING_OPTIONS:
        value = getattr(args, _dest(flag))
        if value is not None:
            training = _checked(flag, value, lambda: replace(config.training, **{name: value}))
            config = config.with_updates(training=training)
    for flag, changes in (
        ("--image-size", {"height": args.image_size, "width": args.image_size}),
        ("--channels", {"channels": args.channels}),
    ):
        value = getattr(args, _dest(flag))
        if value is not None:
            image = _checked(flag, value, lambda: replace(config.image, **changes))
            config = config.with_updates(image=image)
    for flag, name in GATE_OPTIONS:
        value = getattr(args, _dest(flag))
        if value is not None:
            # The class set is filled in once resolved (PipelineConfig.gate_config); the thresholds are set here.
            base = config.gate or GateConfig(normal_class=config.image.normal_class)
            config = config.with_updates(gate=_checked(flag, value, lambda: replace(base, **{name: value})))
    if args.data:
        # Absolute paths: ML Metadata records the URIs as given, and lineage must resolve from any directory.
        path = args.data if "://" in args.data else os.path.abspath(args.data)
        config = config.with_updates(data_path=path, data_format=args.format)
    return config


def apply_beam_arguments(config: PipelineConfig, beam_args: Sequence[str]) -> PipelineConfig:
    """``config`` with the Beam options: a named ``--runner`` replaces the local DirectRunner settings,
    other flags add to them."""
    if not beam_args:
        return config
    custom_runner = any(a.startswith("--runner") for a in beam_args)
    return config.with_updates(beam_args=tuple(beam_args) if custom_runner else LOCAL_BEAM_ARGS + tuple(beam_args))
