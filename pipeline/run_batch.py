"""Scores a large set of wafers with the pushed model on Beam: one row per wafer, CSV or JSON lines.

    python pipeline/run_batch.py --data maps/ --model-dir spanet_output/serving/spanet --output scores.csv
    python pipeline/run_batch.py --data 'lot*/**/*.png' --model-dir MODEL --output scores.jsonl \\
        --runner=DataflowRunner ...

``--data`` takes what ``spanet predict`` takes (images, .npz, G85, WM-811K pickles, folders, quoted
globs); ``--model-dir`` a SavedModel or the serving base folder (its newest version). Beside the
output: ``<stem>.rejected.txt`` (each unreadable input and why) and ``<stem>.summary.json``.
Arguments this script does not know are handed to Beam. Exit status: 0 all scored, 1 some inputs
rejected (the rest scored), 2 bad arguments (before any work).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import pipeline.startup  # noqa: E402,F401  (before TensorFlow is imported)

import argparse  # noqa: E402
import time  # noqa: E402
from typing import List, Optional, Sequence, Tuple  # noqa: E402

EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
#: Log file of Beam's and TensorFlow's messages, beside the output.
LOG_SUFFIX = ".log"


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(prog="run_batch.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="PATH", help="files, folders or quoted globs to score"
    )
    parser.add_argument(
        "--model-dir", required=True, help="a SavedModel folder or a serving base folder (newest version)"
    )
    parser.add_argument(
        "--output", required=True, help="predictions file: .csv or .jsonl (must not exist unless --overwrite)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--batch-size", type=int, default=64, help="wafers per model call (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="show Beam's and TensorFlow's messages on the terminal")
    return parser.parse_known_args(argv)


def check_job(args: argparse.Namespace):
    """The job the arguments describe, every argument checked before Beam or TensorFlow start; ValueError
    naming the option otherwise."""
    from pipeline.batch_inference import OUTPUT_FORMATS, BatchJob
    from spanet.serving.local import resolve_model_dir
    from spanet.serving.predict import expand_paths

    output = os.path.abspath(args.output)
    if os.path.splitext(output)[1].lower() not in OUTPUT_FORMATS:
        raise ValueError(f"--output {args.output}: the name must end in {' or '.join(OUTPUT_FORMATS)}")
    if os.path.exists(output) and not args.overwrite:
        raise ValueError(f"--output {args.output}: exists already (add --overwrite to replace it)")
    if not os.path.isdir(os.path.dirname(output)):
        raise ValueError(f"--output {args.output}: no such folder {os.path.dirname(output)}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    found, problems = expand_paths(args.data)
    files = [f for f in found if os.path.isfile(f)]
    problems += [f"{f}: no such file" for f in found if not os.path.isfile(f)]
    if not files:
        raise ValueError(f"--data: {'; '.join(problems) or 'no input'}")
    model_dir, _ = resolve_model_dir(args.model_dir)
    return BatchJob(
        files=tuple(os.path.abspath(f) for f in files),
        model_dir=os.path.abspath(model_dir),
        output=output,
        class_names=(),
        batch_size=args.batch_size,
    ), problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, beam_args = parse_args(argv)
    stray = [a for a in beam_args if not a.startswith("--")]
    try:
        if stray:
            raise ValueError(f"unexpected argument(s) {stray}; options start with --")
        job, problems = check_job(args)
    except ValueError as exc:
        print(f"run_batch.py: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from dataclasses import replace

    from pipeline.batch_inference import REJECTED_SUFFIX, run_job
    from pipeline.terminal import RunLog
    from spanet.serving.local import LocalModel

    started = time.time()
    log_path = os.path.splitext(job.output)[0] + LOG_SUFFIX
    print(f"Scoring {len(job.files)} file(s) with {job.model_dir}; log: {log_path}")
    with RunLog(log_path, components=0, verbose=args.verbose) as log:
        model = LocalModel(job.model_dir)  # loads once here: a model that cannot load fails before Beam starts
        job = replace(job, class_names=tuple(model.class_names or ()))
        del model
        summary = run_job(job, beam_args)
        terminal = log.terminal
        rejected = list(problems) + summary["rejected"]
        wall = time.time() - started
        classes = ", ".join(f"{name} {count}" for name, count in summary["per_class"].items())
        print(
            f"Scored {summary['wafers']} wafers in {wall:.0f} s ({summary['wafers'] / max(wall, 1e-9):.0f}/s): "
            f"{summary['defective']} flagged defective, {summary['unknown']} unknown; {classes or 'no class'}"
        )
        print(f"Predictions: {job.output}")
        if rejected:
            for line in rejected[:10]:
                print(f"run_batch.py: skipped {line}", file=terminal)
            more = (
                f" (all listed in {os.path.splitext(job.output)[0] + REJECTED_SUFFIX})" if summary["rejected"] else ""
            )
            print(f"run_batch.py: {len(rejected)} input(s) skipped{more}", file=terminal)
    return EXIT_REJECTED if rejected else 0


if __name__ == "__main__":
    code = main()
    # Every file is written and closed by now. Beam's worker cache keeps the loaded model until the
    # interpreter is torn down, where TensorFlow's destructors print a harmless but alarming
    # "TypeError: 'NoneType' object is not subscriptable": exit without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
