"""Runs the spanet pipeline on this machine: LocalDagRunner, Beam DirectRunner, ML Metadata in SQLite.

    python pipeline/run_local.py                        # embedded synthetic data -> pushed model
    python pipeline/run_local.py --data DIR --format png --epochs 30 --width 1.0
    python pipeline/run_local.py --data gs://b/maps --runner=DataflowRunner --project=P ...

Arguments this script does not know are handed to Beam, so a data set that outgrows
one machine runs on Dataflow, Flink or Spark without code changes (docs/beam.md).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    # Run as a script: import the project's packages, not this folder's sibling modules.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import pipeline.startup  # noqa: E402,F401  (before TensorFlow is imported)

import argparse  # noqa: E402
import json  # noqa: E402
import _thread  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import List, Optional, Sequence, TextIO, Tuple  # noqa: E402

from pipeline.arguments import (  # noqa: E402
    OptionError,
    add_pipeline_arguments,
    apply_beam_arguments,
    apply_pipeline_arguments,
)
from pipeline.classes import resolve_classes, unlisted_labels  # noqa: E402
from pipeline.config import DefaultDataConfig, PipelineConfig, stray_arguments  # noqa: E402

#: Exit statuses: 0 a model was blessed and pushed; bad input or arguments (stopped before or during
#: ingestion); the run finished but the gate refused the model (nothing pushed); Ctrl-C (128 + SIGINT).
#: Any other failure exits 1 with its traceback.
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130
PROG = "run_local.py"


def build_parser() -> argparse.ArgumentParser:
    """The local runner's options: those of pipeline.arguments, the output root and the default data's size."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the spanet TFX pipeline locally (with no arguments: on the embedded synthetic data).",
        epilog="Unknown --options are passed to Apache Beam (e.g. --runner=DataflowRunner --project=...).",
    )
    parser.add_argument(
        "--output-root", default="spanet_output", help="pipeline root, metadata and serving dir (default: %(default)s)"
    )
    parser.add_argument(
        "--count",
        type=int,
        default=DefaultDataConfig.count,
        help="size of the generated default data set (about 800 at least: fewer leave some class "
        "out of a split, and the run is refused before it starts)",
    )
    add_pipeline_arguments(parser, data_help="data set path (default: generate the embedded synthetic set once)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the libraries' logs and warnings on the terminal (default: only in the run's log file)",
    )
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    """The parsed options and the arguments left for Beam."""
    return build_parser().parse_known_args(argv)


def config_from_args(args: argparse.Namespace, beam_args: List[str]) -> PipelineConfig:
    """The pipeline configuration for these command-line arguments (OptionError names a bad option)."""
    # Absolute paths: ML Metadata records the artifact URIs as given, and lineage must resolve from any directory.
    config = PipelineConfig(output_root=os.path.abspath(args.output_root))
    config = apply_pipeline_arguments(config, args)
    config = config.with_updates(default_data=replace(config.default_data, count=args.count))
    return apply_beam_arguments(config, beam_args)


def ensure_default_data(config: PipelineConfig) -> str:
    """Generates the embedded synthetic data set once (a PNG folder with a manifest); returns its path."""
    path = config.default_data_dir
    if os.path.isdir(path):
        return path
    from spanet.data.generator import iter_wafer_maps
    from spanet.data.writers import write_dataset

    data = config.default_data
    print(f"Generating the default data set: {data.count} synthetic wafer maps (seed {data.seed}) -> {path}")
    records = iter_wafer_maps(data.count, data.seed, data.generator_config())
    write_dataset(records, path, "png", total=data.count, show_progress=True)
    return path


def run(config: PipelineConfig, verbose: bool = False) -> int:
    """Runs the pipeline and prints what it produced; returns a process exit code.

    The terminal shows a line per component, the Trainer's epochs and the summary; everything the
    libraries log goes to ``<output root>/logs/run-<time>.log`` (``verbose``: to the terminal too).
    """
    from tfx import v1 as tfx

    from components.anomaly_gate import SchemaAnomalyError
    from pipeline.output_lock import OutputRootBusy, hold_output_root
    from pipeline.results import read_results
    from pipeline.spanet_pipeline import create_pipeline
    from pipeline.terminal import RunLog
    from spanet.data.records import DataInputError

    try:
        with hold_output_root(config.output_root):
            if config.data_path is None:
                ensure_default_data(config)
            config, census = resolve_classes(config)
            print(
                f"Classes ({len(config.class_names)}; normal: {config.image.normal_class!r}): "
                f"{', '.join(config.class_names)}"
            )
            if config.image.multilabel:
                print(
                    f"Multi-label: one output per pattern ({len(config.image.patterns)}): "
                    f"{', '.join(config.image.patterns)}"
                )
            unlisted = unlisted_labels(config.class_names, census)
            if unlisted:
                print(
                    f"Labels in the data outside --classes: {unlisted}; the schema check will stop the run on them",
                    file=sys.stderr,
                )
            os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
            metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
            started = time.time()
            from tfx.dsl.placeholder import placeholder as ph

            pipeline = create_pipeline(config, metadata, run_id=ph.execution_invocation().pipeline_run_id)
            log_path = os.path.join(
                config.output_root, "logs", time.strftime("run-%Y%m%d-%H%M%S.log", time.localtime(started))
            )
            print(
                f"Running pipeline {config.pipeline_name!r}: data {config.resolved_data_path} "
                f"({config.resolved_data_format}), root {config.pipeline_root}, Beam {' '.join(config.beam_args)}"
            )
            print(
                f"Log: {log_path}"
                + ("" if verbose else " (the libraries' logs and warnings; --verbose shows them here)")
            )
            with RunLog(log_path, len(pipeline.components), verbose) as log:
                tfx.orchestration.LocalDagRunner().run(pipeline)
                wall = time.time() - started
                # This run's own executions: cached or not, never the newest artifacts of another run.
                results = read_results(config.metadata_path, since_ms=int(started * 1000))
                return report(config, results, wall, log.terminal)
    except (SchemaAnomalyError, DataInputError, OutputRootBusy) as error:
        print(f"\nStopped: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def report(config: PipelineConfig, results, wall_seconds: float, errors: Optional[TextIO] = None) -> int:
    """Prints the pushed model, the evaluation, the blessing and where the reports are (a refusal to ``errors``,
    by default standard error)."""
    from components.eval_summary import evaluation_lines, summarize_evaluation

    print(f"\nPipeline finished in {wall_seconds:.0f} s.")
    if results.component_seconds:
        print("Component times: " + ", ".join(f"{k} {v:.0f}s" for k, v in results.component_seconds.items()))
    summary = results.training_summary
    excluded = (
        results.quarantine_summary.get("rejected_total", {}).get("excluded", 0) if results.quarantine_summary else 0
    )
    if excluded:
        print(
            f"Left out: {excluded} wafers (mixed-type in --mixed single, or a reader option); per class: "
            f"{results.quarantine_summary['rejected_per_kind_and_class']['excluded']}"
        )
    if summary:
        point = summary["operating_point"]
        print(
            f"Trainer: {summary['epochs_run']} epochs, {summary['parameters']:,} parameters; operating threshold "
            f"P(normal) < {point['threshold']:.3f}, set by the {point.get('limited_by', 'target recall')} (eval defect "
            f"recall {point['defect_recall']:.4f}, false alarms {point['false_alarm_rate']:.4f})"
        )
        timing = summary.get("timing_s")
        if timing:
            print(
                f"Trainer time: {timing['fit']:.0f} s training ({timing['median_epoch']:.1f} s an epoch; the first "
                f"took {timing['graph_building']:.0f} s more, building graphs), "
                f"{timing['calibration']:.0f} s calibration"
            )
        if "familiarity_threshold" in summary:
            familiarity = (
                "distance of the least decided pattern's cosine from its boundary"
                if summary.get("multilabel")
                else "largest cosine to a class"
            )
            print(
                f"Unknown inputs: familiarity ({familiarity}) < {summary['familiarity_threshold']:.4f} is answered "
                f"'unknown' and flagged; on eval that rejects {summary['eval_unknown_rate']:.2%} of all wafers and "
                f"{summary['eval_unknown_rate_normal']:.2%} of normal ones"
            )
    if results.evaluation_uri:
        class_names = summary.get("class_names", list(config.class_names))
        evaluation = summarize_evaluation(results.evaluation_uri, class_names, config.display_classes)
        for line in evaluation_lines(evaluation, config.gate_config.min_defect_recall):
            print(line)
        with open(os.path.join(config.output_root, "evaluation_summary.json"), "w", encoding="utf-8") as handle:
            json.dump(evaluation, handle, indent=2, allow_nan=False)
    print(
        f"Blessed: {results.blessed}.  Pushed: {results.pushed}"
        + (f" -> {results.pushed_path}" if results.pushed else "")
    )
    if results.report_path:
        print(f"Run report: {os.path.abspath(results.report_path)}")
        if results.pushed and results.pushed_path and "://" not in results.pushed_path:
            from components.report.model_card import copy_beside_model

            card = copy_beside_model(os.path.dirname(os.path.abspath(results.report_path)), results.pushed_path)
            if card:
                print(f"Model card: {card}")
    print(
        f"Reports: evaluation {results.evaluation_uri}; anomalies {results.anomalies_uri}; "
        f"quarantined records {results.quarantine_uri}; TensorBoard logs {results.trainer_run_dir}"
    )
    if not results.blessed:
        print(
            f"The gate refused the model: nothing was pushed (exit status {EXIT_REFUSED}).", file=errors or sys.stderr
        )
        return EXIT_REFUSED
    return 0


class _Interrupts:
    """Remembers a Ctrl-C (SIGINT): TFX may turn the KeyboardInterrupt into another error on its way out.

    A KeyboardInterrupt raised while the interpreter runs a destructor or a weakref callback is
    printed as "Exception ignored" and lost (measured: a run went on to the end). So after the first
    Ctrl-C the main thread is interrupted again every second until :meth:`stop` says it was handled.
    """

    #: Seconds between the repeated interrupts.
    REPEAT_S = 1.0

    def __init__(self):
        self.seen = False
        self._handled = threading.Event()
        self._repeater: Optional[threading.Thread] = None

    def __call__(self, signum, frame):
        if self._handled.is_set():
            return  # a repeat that arrived after the interrupt was handled
        self.seen = True
        if self._repeater is None:
            self._repeater = threading.Thread(target=self._repeat, name="ctrl-c-repeater", daemon=True)
            self._repeater.start()
        raise KeyboardInterrupt

    def _repeat(self) -> None:
        while not self._handled.wait(self.REPEAT_S):
            _thread.interrupt_main()

    def stop(self) -> None:
        """No more repeated interrupts (call before the previous SIGINT handler is restored)."""
        self._handled.set()
        if self._repeater is not None:
            self._repeater.join()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, beam_args = parse_args(argv)
    unknown = stray_arguments(tuple(beam_args))
    if unknown:
        print(f"{PROG}: unexpected argument(s) {list(unknown)}; options start with --", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        config = config_from_args(args, beam_args)
    except OptionError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    interrupts = _Interrupts()
    previous = signal.signal(signal.SIGINT, interrupts)
    try:
        code = run(config, verbose=args.verbose)
    except BaseException:
        if not interrupts.seen:
            raise
        interrupts.stop()
        print("\nInterrupted; rerun the same command to resume from the cache.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        interrupts.stop()
        signal.signal(signal.SIGINT, previous)
    # Collect TensorFlow's functions while the interpreter is intact: left to shutdown, their
    # destructors print harmless but alarming "TypeError: 'NoneType' object is not subscriptable".
    import gc

    gc.collect()
    return code


if __name__ == "__main__":
    sys.exit(main())
