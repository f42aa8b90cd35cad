"""Wall time of the local pipeline: from a clean output root to a pushed model, then cached reruns.

    python benchmarks/bench_pipeline.py  # default data (pipeline.config.DefaultDataConfig), 1 clean + 2 cached runs
    python benchmarks/bench_pipeline.py --count 1000 --cached-runs 3

Each run is a separate process (as a user runs it); the per-component breakdown comes
from ML Metadata (execution start and end). Targets on this 2-core machine: <= 10
minutes clean, <= 1 minute cached.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

from pipeline.config import DefaultDataConfig  # noqa: E402
from pipeline.results import read_results  # noqa: E402
from pipeline.run_local import EXIT_REFUSED  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_run(output_root: str, extra: List[str]) -> Tuple[float, Dict[str, float], Optional[bool]]:
    """One ``run_local.py`` process: wall seconds, seconds per component, whether a model was pushed."""
    started = time.time()
    command = [sys.executable, os.path.join(ROOT, "pipeline", "run_local.py"), "--output-root", output_root, *extra]
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.time() - started
    if completed.returncode not in (0, EXIT_REFUSED):  # a refused model is a finished run
        sys.stdout.write(completed.stdout[-4000:])
        raise SystemExit(f"run_local.py failed with exit code {completed.returncode}")
    results = read_results(os.path.join(output_root, "metadata", "metadata.sqlite"), since_ms=int(started * 1000))
    return wall, results.component_seconds, results.pushed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DefaultDataConfig.count, help="default data set size")
    parser.add_argument("--cached-runs", type=int, default=2)
    parser.add_argument("--keep", help="output root to use and keep (default: a temporary folder)")
    args = parser.parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="spanet-bench-")
    extra = ["--count", str(args.count)]
    try:
        print(f"clean run ({args.count} maps, data generation included) -> {root}", flush=True)
        wall, components, pushed = timed_run(root, extra)
        print(f"  wall {wall:.0f} s, pushed: {pushed}")
        for name, seconds in sorted(components.items(), key=lambda kv: -kv[1]):
            print(f"    {name:<32} {seconds:7.1f} s")
        cached = []
        for i in range(args.cached_runs):
            wall_cached, components_cached, _ = timed_run(root, extra)
            cached.append(wall_cached)
            busiest = max(components_cached.items(), key=lambda kv: kv[1], default=("-", 0.0))
            print(
                f"cached run {i + 1}: wall {wall_cached:.0f} s (slowest component: {busiest[0]} {busiest[1]:.1f} s)",
                flush=True,
            )
        if cached:
            print(
                f"\nclean {wall:.0f} s (target <= 600 s); "
                f"cached median {statistics.median(cached):.0f} s (target <= 60 s)"
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
