"""Faults on the pipeline side: hostile inputs at ingestion, and a kill at each component.

    python benchmarks/bench_faults.py                 # both parts (about 10 minutes on 2 cores)
    python benchmarks/bench_faults.py --skip-kills    # the ingestion part only (about 1 minute)

1. Ingestion: a PNG folder of good maps plus every kind of bad input the project has met (a
   truncated PNG, text named .png, an empty file, a 400-byte PNG declaring 20,000 x 20,000
   pixels, a valid 64 x 5,000 image outside the schema, a 16-bit image, a manifest row for a
   missing file) goes through the real WaferExampleGen on Beam. Prints bad inputs tried / clear
   errors (quarantined, each with a reason naming it) / records lost (good maps not ingested:
   must be 0).
2. Kills: ``run_local.py`` on small data is killed (SIGKILL, the OOM killer's signal) as each
   component starts, then the same command is rerun. Prints, per component, whether the rerun
   finished, pushed, and reported this run's own artifacts. Must be all yes.

The server's faults (oversized requests, peak memory, swaps under load) are in
``benchmarks/bench_serving_faults.py``.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import pipeline.startup  # noqa: E402,F401  (the shared start-up, before TensorFlow is imported)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import csv  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from pipeline.run_local import EXIT_REFUSED  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The components of the local pipeline, in the order they start.
COMPONENTS = ("WaferExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "EvaluationReporter", "Pusher")
#: Small data, so that each killed run and its rerun take about a minute: a test of recovery, not of the model.
SMALL_RUN = ["--count", "500", "--epochs", "3", "--image-size", "32", "--width", "0.25"]


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height grey pixels, with one row of data (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def bad_inputs(folder: str) -> Dict[str, str]:
    """Writes the hostile files into a PNG data folder and its manifest; returns {ref: what it is}."""
    from PIL import Image

    cases = {
        "Center/truncated.png": "a PNG cut in the middle",
        "Center/text.png": "a text file named .png",
        "Loc/empty.png": "an empty file",
        "Loc/bomb.png": "a 400-byte PNG declaring 20,000 x 20,000 pixels",
        "Donut/too_wide.png": "a valid 64 x 5,000 image (the schema allows 4,096 a side)",
        "Donut/sixteen_bit.png": "a 16-bit grey image",
        "Scratch/missing.png": "a manifest row for a file that does not exist",
    }
    good = open(os.path.join(folder, "Center", sorted(os.listdir(os.path.join(folder, "Center")))[0]), "rb").read()
    write = {
        "Center/truncated.png": good[: len(good) // 2],
        "Center/text.png": b"this is not an image\n",
        "Loc/empty.png": b"",
        "Loc/bomb.png": _png_declaring(20000, 20000),
    }
    for ref, data in write.items():
        with open(os.path.join(folder, ref), "wb") as handle:
            handle.write(data)
    Image.fromarray(np.full((64, 5000), 128, np.uint8)).save(os.path.join(folder, "Donut", "too_wide.png"))
    Image.fromarray(np.full((30, 30), 4000, np.uint16)).save(os.path.join(folder, "Donut", "sixteen_bit.png"))
    with open(os.path.join(folder, "manifest.csv"), "a", encoding="utf-8") as handle:
        for i, ref in enumerate(cases):
            handle.write(f"{ref},{ref.split('/')[0]},LOTBAD{i // 3},{i % 3 + 1:02d},sort\n")
    return cases


def ingestion_faults(work: str, count: int) -> Tuple[int, int, int]:
    """(bad inputs tried, clear errors, good records lost) through the real WaferExampleGen on Beam."""
    from ml_metadata import metadata_store
    from tfx import v1 as tfx

    from components.wafer_example_gen import WaferExampleGen
    from components.wafer_example_gen.artifacts import REJECTED_CSV, SUMMARY_JSON
    from spanet.data import generate_wafer_maps, write_dataset

    data = os.path.join(work, "maps")
    write_dataset(generate_wafer_maps(count, 7, lot_size=10, min_size=20, max_size=60), data, "png")
    cases = bad_inputs(data)
    db = os.path.join(work, "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="bench-faults",
        pipeline_root=os.path.join(work, "root"),
        components=[WaferExampleGen(data_path=data, data_format="png")],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db),
        beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=0"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(db))
    [report] = store.get_artifacts_by_type("spanet.WaferQuarantineReport")
    with open(os.path.join(report.uri, REJECTED_CSV), encoding="utf-8") as handle:
        reasons = {row["ref"]: row["reason"] for row in csv.DictReader(handle)}
    with open(os.path.join(report.uri, SUMMARY_JSON), encoding="utf-8") as handle:
        summary = json.load(handle)
    print(f"  {'bad input':<26} {'what it is':<58} reason given")
    clear = 0
    for ref, what in cases.items():
        reason = reasons.get(ref, "")
        clear += bool(reason)
        print(f"  {ref:<26} {what:<58} {reason[:90] or 'NOT QUARANTINED'}")
    lost = count - summary["examples_total"]
    return len(cases), clear, lost


def _artifact_dirs(output_root: str, component: str) -> List[str]:
    return glob.glob(os.path.join(output_root, "pipeline", component, ".system", "executor_execution", "*"))


def kill_at(component: str, work: str) -> Dict[str, object]:
    """Kills a small run as ``component`` starts, reruns the same command; what the rerun reported."""
    from pipeline.results import read_results

    output_root = os.path.join(work, f"kill-{component}")
    command = [sys.executable, os.path.join(ROOT, "pipeline", "run_local.py"), "--output-root", output_root, *SMALL_RUN]
    env = {**os.environ, "PYTHONPATH": ROOT}
    log = open(os.path.join(work, f"kill-{component}.log"), "w", encoding="utf-8")
    run = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.time() + 900
    while not _artifact_dirs(output_root, component) and run.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    killed = run.poll() is None
    if killed:
        time.sleep(1.0)  # inside the component's executor
        os.killpg(run.pid, signal.SIGKILL)
    first_exit = run.wait()
    log.close()
    if not killed:  # it ended before the component started: say how
        with open(log.name, encoding="utf-8") as handle:
            print(f"  (the first run ended by itself, exit {first_exit}: {handle.read()[-300:]!r})")
    started = time.time()
    rerun = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    results = read_results(os.path.join(output_root, "metadata", "metadata.sqlite"), since_ms=int(started * 1000))
    own = bool(results.model_uri) and os.path.exists(results.model_uri)
    shutil.rmtree(output_root, ignore_errors=True)
    return {
        "killed": killed,
        "exit": rerun.returncode,
        "pushed": bool(results.pushed),
        "own_artifacts": own,
        "rerun_s": round(time.time() - started),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="good maps in the ingestion part")
    parser.add_argument("--skip-kills", action="store_true", help="only the ingestion part")
    parser.add_argument("--components", default=",".join(COMPONENTS), help="components to kill at (comma-separated)")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="spanet-faults-")
    failures = 0
    try:
        print(f"1. Ingestion: {args.count} good maps plus hostile files, real WaferExampleGen (Beam, multi-process)")
        tried, clear, lost = ingestion_faults(os.path.join(work, "ingest"), args.count)
        print(f"bad inputs tried {tried} / clear errors {clear} / records lost {lost} (must be 0)")
        failures += (clear != tried) + (lost != 0)
        if not args.skip_kills:
            print(
                f"\n2. A kill (SIGKILL) as each component starts, then the same command again ({' '.join(SMALL_RUN)})"
            )
            print(f"  {'component':<20} killed  rerun exit  pushed  own artifacts  rerun s")
            for component in args.components.split(","):
                outcome = kill_at(component, work)
                print(
                    f"  {component:<20} {str(outcome['killed']):<7} {outcome['exit']:<11} {str(outcome['pushed']):<7} "
                    f"{str(outcome['own_artifacts']):<14} {outcome['rerun_s']}",
                    flush=True,
                )
                # The small run's gate may refuse its 3-epoch model: a finished run and its own artifacts count.
                failures += outcome["exit"] not in (0, EXIT_REFUSED) or not outcome["own_artifacts"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'all faults handled' if not failures else f'{failures} fault(s) NOT handled'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
