"""The pipeline's one typed configuration: data, image size, hyper-parameters, gate, paths, Beam.

Both runners (local and Kubeflow) build the same pipeline from a :class:`PipelineConfig`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple

from components.config import ImageConfig, ModuleConfig, TrainingConfig
from components.evaluation import GateConfig
from spanet.serving.contract import DEFAULT_MODEL_NAME
from spanet.data.generator import DEFAULT_CLASS_MIX, RECIPE_VERSION, GeneratorConfig, PatternRanges

#: Splits by lot: the Trainer fits on train, picks its operating point on eval; the gate judges test.
#: 40 % goes to test so that the default data's test split holds ~1,850 defective wafers, ~230 per
#: class: the one-sided 95 % lower bound clears 0.99 with up to 10 misses there (with none it needs 299
#: defective wafers; components.clopper_pearson.defects_needed), and each class's point estimate with
#: up to two. With the earlier quarter (~880, ~100 per class) a model that misses 0.25 % of defective
#: wafers (measured on 5,354 fresh maps) was refused about half the time by chance alone.
#: How mixed-type labels (``Center+Loc``) are trained: each combination as its own class (MixedWM38's
#: 38 classes); "single": mixed maps are left out, counted in the quarantine report; "multilabel": one
#: sigmoid output per base pattern, a label the set of its parts (ImageConfig.patterns).
MIXED_MODES: Tuple[str, ...] = ("classes", "single", "multilabel")
#: 18 % goes to eval because the operating point's false-alarm budget is set there and grids (which
#: false alarms depend on) are drawn per lot: with 14 % (28 lots of normal wafers) test's false alarms
#: came out 0.01-0.09 above eval's in six default runs, 1.7-1.9x eval's at every budget in the last.
DEFAULT_SPLITS: Tuple[Tuple[str, float], ...] = (("train", 0.42), ("eval", 0.18), ("test", 0.4))
#: Beam on one machine: the DirectRunner with one worker process per core.
LOCAL_BEAM_ARGS: Tuple[str, ...] = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
#: The pipeline's run-time parameters (TFX RuntimeParameters; on Kubeflow the run's arguments) and their
#: types: a run may change them without recompiling. The local runner uses their defaults, which are
#: this configuration's values (PipelineConfig.runtime_defaults).
DATA_PATH_PARAMETER = "data_path"
EPOCHS_PARAMETER = "epochs"
MIN_DEFECT_RECALL_PARAMETER = "min_defect_recall"
RUNTIME_PARAMETERS: Dict[str, type] = {
    DATA_PATH_PARAMETER: str,
    EPOCHS_PARAMETER: int,
    MIN_DEFECT_RECALL_PARAMETER: float,
}


def stray_arguments(beam_args: Tuple[str, ...]) -> Tuple[str, ...]:
    """Arguments left after a runner's own options that cannot be Beam options (those start with --)."""
    return tuple(a for a in beam_args if not a.startswith("--"))


@dataclass(frozen=True)
class DefaultDataConfig:
    """The embedded default data set: synthetic WM-811K-style wafer maps written as a PNG folder."""

    # 7,000 maps: with the default splits ~2,950 train, ~1,250 eval (50 lots) and a test split of
    # ~1,850 defective wafers (~230 per defect class for the per-class gate); `make run` stays within
    # 10 minutes on 2 cores.
    count: int = 7000
    seed: int = 0
    #: Wafers per lot (real lots hold 25); splits are by lot.
    lot_size: int = 25
    # Relative class weights: `none` dominates as in real fabs (85% in WM-811K), less extreme so
    # that every defect class has enough test wafers for a per-class recall gate.
    class_mix: Tuple[Tuple[str, float], ...] = DEFAULT_CLASS_MIX
    #: The generator's ranges and grid bounds (spanet.data.generator); the tests narrow them for a tiny, easy problem.
    ranges: PatternRanges = field(default_factory=PatternRanges)
    min_size: int = GeneratorConfig.min_size
    max_size: int = GeneratorConfig.max_size

    def class_mix_dict(self) -> Dict[str, float]:
        return dict(self.class_mix)

    def fingerprint(self) -> str:
        """8 hex digits of the generator recipe and settings: a data set made otherwise gets another folder."""
        settings = {"recipe": RECIPE_VERSION, "generator": dataclasses.asdict(self.generator_config())}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]

    def generator_config(self) -> GeneratorConfig:
        """The generator configuration that makes this data set."""
        return GeneratorConfig(
            class_mix=self.class_mix_dict(),
            lot_size=self.lot_size,
            ranges=self.ranges,
            min_size=self.min_size,
            max_size=self.max_size,
        )


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run of the pipeline needs."""

    pipeline_name: str = "spanet"
    output_root: str = "spanet_output"
    #: None: use (and create once) the embedded default data set under ``output_root/data``.
    data_path: Optional[str] = None
    data_format: str = "auto"
    default_data: DefaultDataConfig = field(default_factory=DefaultDataConfig)
    splits: Tuple[Tuple[str, float], ...] = DEFAULT_SPLITS
    split_seed: int = 0
    image: ImageConfig = field(default_factory=ImageConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    #: The classes, in report order; None: the labels found in the data (pipeline.classes.resolve_classes).
    #: In multi-label mode the label values (each combination of patterns found); the patterns are
    #: ``image.patterns``.
    class_names: Optional[Tuple[str, ...]] = None
    #: Mixed-type labels such as ``Center+Loc``: one of MIXED_MODES.
    mixed: str = "classes"
    gate: Optional[GateConfig] = None  # None: the default gate over ``class_names``
    #: The name the model is served under (TF Serving's MODEL_NAME).
    model_name: str = DEFAULT_MODEL_NAME
    #: Where the Pusher writes versions; None: ``output_root/serving/<model_name>``.
    serving_base_dir: Optional[str] = None
    #: Pipeline root; None: ``output_root/pipeline``. A gs:// or s3:// URI on a cluster.
    pipeline_root_override: Optional[str] = None
    beam_args: Tuple[str, ...] = LOCAL_BEAM_ARGS
    enable_cache: bool = True

    def __post_init__(self):
        names = [name for name, _ in self.splits]
        for required in ("train", "eval", "test"):
            if required not in names:
                raise ValueError(
                    f"splits must include {required!r} (train: fit, eval: operating point, test: gate); got {names}"
                )
        if self.mixed not in MIXED_MODES:
            raise ValueError(f"mixed must be one of {list(MIXED_MODES)}; got {self.mixed!r}")
        if self.class_names is not None and self.image.normal_class not in self.class_names:
            raise ValueError(
                f"the normal class {self.image.normal_class!r} must be one of class_names {list(self.class_names)}"
            )

    @property
    def pipeline_root(self) -> str:
        return self.pipeline_root_override or os.path.join(self.output_root, "pipeline")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_root, "metadata", "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return self.serving_base_dir or os.path.join(self.output_root, "serving", self.model_name)

    @property
    def default_data_dir(self) -> str:
        data = self.default_data
        # The recipe's fingerprint is in the name: data generated by older code or other ranges is not reused.
        return os.path.join(self.output_root, "data", f"synthetic-{data.count}-seed{data.seed}-{data.fingerprint()}")

    @property
    def resolved_data_path(self) -> str:
        return self.data_path or self.default_data_dir

    @property
    def resolved_data_format(self) -> str:
        return self.data_format if self.data_path else "png"

    @property
    def display_classes(self) -> Tuple[str, ...]:
        """The classes in the order the report and the terminal list them: the model's outputs (the
        patterns in multi-label mode) in the configured order."""
        if self.image.multilabel:
            return tuple(self.image.patterns)
        return tuple(self.class_names or ())

    @property
    def gate_config(self) -> GateConfig:
        """The gate's thresholds (``gate``, or the defaults) over this run's classes, normal class and patterns."""
        if self.class_names is None:
            raise ValueError("the class set is not resolved yet: pipeline.classes.resolve_classes(config) fills it in")
        return replace(
            self.gate or GateConfig(),
            class_names=tuple(self.class_names),
            normal_class=self.image.normal_class,
            patterns=tuple(self.image.patterns),
        )

    def runtime_defaults(self) -> Dict[str, Any]:
        """The value of each run-time parameter (RUNTIME_PARAMETERS) that this configuration compiles in."""
        values = {
            DATA_PATH_PARAMETER: self.resolved_data_path,
            EPOCHS_PARAMETER: self.training.epochs,
            MIN_DEFECT_RECALL_PARAMETER: (self.gate or GateConfig()).min_defect_recall,
        }
        return {name: RUNTIME_PARAMETERS[name](value) for name, value in values.items()}

    def with_runtime_arguments(self, arguments: Mapping[str, Any]) -> "PipelineConfig":
        """The configuration a run with these run-time arguments amounts to (ValueError names a bad one)."""
        config = self
        for name, value in arguments.items():
            try:
                if name == DATA_PATH_PARAMETER:
                    if not str(value).strip():
                        raise ValueError("must not be empty")
                    config = config.with_updates(data_path=str(value))
                elif name == EPOCHS_PARAMETER:
                    config = config.with_updates(training=replace(config.training, epochs=value))
                elif name == MIN_DEFECT_RECALL_PARAMETER:
                    config = config.with_updates(gate=replace(config.gate or GateConfig(), min_defect_recall=value))
                else:
                    raise ValueError(f"not a run-time parameter (known: {', '.join(RUNTIME_PARAMETERS)})")
            except ValueError as error:
                raise ValueError(f"{name}={value!r}: {error}") from None
        return config

    def reader_options(self, data_format: str) -> Dict[str, Any]:
        """Keyword options for the reader of `data_format` that follow from this configuration."""
        from spanet.data.readers import READERS

        reader = READERS.get(data_format)
        if reader is not None and "mixed" in {f.name for f in dataclasses.fields(reader)}:
            return {"mixed": self.mixed != "single"}
        return {}

    @property
    def module_config(self) -> ModuleConfig:
        return ModuleConfig(image=self.image, training=self.training, model_name=self.model_name)

    def with_updates(self, **changes) -> "PipelineConfig":
        """A copy with some fields changed (the config is frozen)."""
        return replace(self, **changes)
