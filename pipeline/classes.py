"""The run's class set: from `--classes` or discovered in the data, checked before any component runs.

One line names the class and what is wrong (unknown normal class, a listed class absent from the
data, a class with no wafer in a split, a single class). Labels in the data outside an explicit
class list are left to the schema gate (ExampleValidator), which stops the run and names them.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from typing import List, Optional, Sequence, Tuple

from pipeline.config import MIXED_MODES, PipelineConfig
from spanet.data.census import LabelCensus, parse_class_list, take_census
from spanet.data.classes import NORMAL_CLASS, label_parts
from spanet.data.readers import detect_format, make_reader
from spanet.data.records import DataInputError


class ClassSetError(DataInputError):
    """The configured classes do not fit the data (or each other)."""


def check_class_list(classes: Sequence[str], normal_class: str, where: str = "the classes") -> None:
    """ClassSetError unless `classes` has at least two names, one of them `normal_class`."""
    if normal_class not in classes:
        raise ClassSetError(
            f"--normal-class {normal_class!r} is not one of {where} {list(classes)}; "
            "name the class that means 'not defective'"
        )
    if len(classes) < 2:
        raise ClassSetError(
            f"only one class ({classes[0]!r}) in {where}: "
            "a classifier needs the normal class and at least one defect class"
        )


def check_census(classes: Sequence[str], census: LabelCensus, path: str, listed: bool) -> None:
    """ClassSetError naming a listed class absent from the data, or a class with no wafer in some split."""
    absent = [c for c in classes if census.total(c) == 0]
    if listed and absent:
        raise ClassSetError(
            f"--classes lists {absent} but {path} holds no wafer labelled so; labels in the data: {census.labels}"
        )
    for name in classes:
        missing = census.missing_from(name)
        if missing:
            per_split = {split: counts.get(name, 0) for split, counts in census.per_split.items()}
            raise ClassSetError(
                f"class {name!r} has no example in the {missing[0]!r} split ({per_split}; splits are by lot): "
                "add wafers of this class from more lots, or leave the class out"
            )


def unlisted_labels(classes: Sequence[str], census: Optional[LabelCensus]) -> List[str]:
    """Labels in the data that the class list leaves out (the schema gate will stop the run on them)."""
    return [label for label in census.labels if label not in classes] if census else []


def pattern_census(census: LabelCensus) -> LabelCensus:
    """Multi-label: wafers per split carrying each pattern (a ``+`` label counts for each of its parts)."""
    per_split = {}
    for split, counts in census.per_split.items():
        parts: dict = {}
        for label, count in counts.items():
            for part in label_parts(label):
                parts[part] = parts.get(part, 0) + count
        per_split[split] = parts
    return LabelCensus(per_split)


def _resolve_multilabel(config: PipelineConfig, census: Optional[LabelCensus], path: str) -> PipelineConfig:
    """Multi-label: the patterns (``--classes`` less the normal class, else every part of every label)
    go to ``image.patterns``; the class names become the label values whose parts are all known."""
    normal = config.image.normal_class
    if census is None:
        raise ClassSetError(
            f"{path}: --mixed multilabel needs labels that can be counted before reading "
            "(an image folder, a manifest, an npz or G85 files)"
        )
    parts = pattern_census(census)
    listed = config.class_names is not None
    classes = tuple(config.class_names) if listed else tuple(parts.labels)
    check_class_list(classes, normal, "--classes" if listed else "the patterns found in the data")
    check_census(classes, parts, path, listed=listed)
    patterns = tuple(c for c in classes if c != normal)
    values = tuple(label for label in census.labels if set(label_parts(label)) <= set(classes))
    gate = (
        replace(config.gate, class_names=values, normal_class=normal, patterns=patterns)
        if config.gate is not None
        else None
    )
    return config.with_updates(class_names=values, gate=gate, image=replace(config.image, patterns=patterns))


def resolve_classes(config: PipelineConfig) -> Tuple[PipelineConfig, Optional[LabelCensus]]:
    """`config` with its class set filled in from the data where not given, and checked against the data.

    Reads only what the readers know before decoding images (folder names, manifests, npz label arrays;
    G85 text files are parsed for the lot they name).
    """
    path = config.resolved_data_path
    data_format = config.resolved_data_format
    if data_format == "auto":
        data_format = detect_format(path)
    reader = make_reader(data_format, path, config.reader_options(data_format))
    census = take_census(reader, path, dict(config.splits), config.split_seed)
    if config.data_path:
        config = config.with_updates(data_format=data_format)  # "auto" resolved once, here
    if config.mixed == "multilabel":
        return _resolve_multilabel(config, census, path), census
    normal = config.image.normal_class
    if config.class_names is not None:
        classes = tuple(config.class_names)
        check_class_list(classes, normal, "--classes")
    else:
        found = census.labels if census is not None else reader.vocabulary
        if not found:
            raise ClassSetError(
                f"{path}: the {reader.name!r} reader cannot list the labels before reading; give --classes"
            )
        classes = tuple(found)
        check_class_list(classes, normal, f"the labels found in {os.path.basename(path.rstrip('/')) or path}")
    if census is not None:
        check_census(classes, census, path, listed=config.class_names is not None)
    gate = replace(config.gate, class_names=classes, normal_class=normal) if config.gate is not None else None
    return config.with_updates(class_names=classes, gate=gate), census


def _class_list(text: str) -> Tuple[str, ...]:
    try:
        return parse_class_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_class_arguments(parser: argparse.ArgumentParser) -> None:
    """--classes, --normal-class and --mixed, the same for both runners."""
    parser.add_argument(
        "--classes",
        type=_class_list,
        metavar="A,B,C",
        help="the classes to train, in report order (default: the labels found in the data)",
    )
    parser.add_argument(
        "--normal-class",
        default=NORMAL_CLASS,
        metavar="NAME",
        help="the class that means 'not defective': defect recall, the gate and the operating "
        "threshold follow it (default: %(default)s)",
    )
    parser.add_argument(
        "--mixed",
        default=MIXED_MODES[0],
        choices=MIXED_MODES,
        help="mixed-type labels such as Center+Loc: each combination its own class; 'single': "
        "mixed wafers are left out and counted; 'multilabel': one output per pattern, --classes "
        "then names the patterns (default: %(default)s)",
    )


def apply_class_arguments(config: PipelineConfig, args: argparse.Namespace) -> PipelineConfig:
    """`config` with the class options of `args` (see add_class_arguments)."""
    return config.with_updates(
        class_names=args.classes, mixed=args.mixed, image=replace(config.image, normal_class=args.normal_class)
    )


def classes_for_compile(config: PipelineConfig) -> PipelineConfig:
    """The class set of a pipeline compiled for a cluster: --classes, or the labels of data readable here.

    ClassSetError when neither (the pods will read the data; this machine must know its classes).
    """
    if config.mixed == "multilabel" and not (config.data_path and os.path.exists(config.data_path)):
        raise ClassSetError(
            "--mixed multilabel: the schema lists the pattern combinations found in the data, "
            "so --data must be readable on this machine when the pipeline is compiled"
        )
    if config.class_names is not None and config.mixed != "multilabel":
        check_class_list(config.class_names, config.image.normal_class, "--classes")
        gate = replace(config.gate, class_names=config.class_names) if config.gate is not None else None
        return config.with_updates(gate=gate)
    if config.data_path and not os.path.exists(config.data_path):
        raise ClassSetError(
            f"--data {config.data_path!r} cannot be read here to find its classes: give --classes A,B,C"
        )
    if config.data_path is None:
        # The embedded default data: the generator's classes (the data itself exists only where it was made).
        classes = tuple(sorted(config.default_data.class_mix_dict()))
        check_class_list(classes, config.image.normal_class, "the default data's classes")
        return config.with_updates(class_names=classes)
    return resolve_classes(config)[0]
