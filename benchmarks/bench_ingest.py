"""Benchmark wafer data in: generation speed (maps/s) and ingestion through WaferExampleGen (examples/s).

Ingestion runs the real component under LocalDagRunner at several data sizes, with Beam's
DirectRunner in-process and multi-processing, so the growth of the cost with the data is visible.
Not run in tests. Usage:

    TF_USE_LEGACY_KERAS=1 python benchmarks/bench_ingest.py [--sizes 1000,10000,100000] [--format png]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pipeline.startup  # noqa: E402,F401  (the shared start-up, before TensorFlow is imported)

MODES = {
    "in_process": [],
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=0"],
}


def bench_generation(count: int, repeats: int) -> None:
    """Print maps/s of the generator at 64x64 and at mixed 26-64 grids (median of `repeats`)."""
    from spanet.data import GeneratorConfig, iter_wafer_maps

    for name, config in (("64x64", GeneratorConfig(min_size=64, max_size=64)), ("26-64", GeneratorConfig())):
        rates = []
        for r in range(repeats):
            t = time.perf_counter()
            n = sum(1 for _ in iter_wafer_maps(count, seed=r, config=config))
            rates.append(n / (time.perf_counter() - t))
        print(
            f"generate {name:>6}: {statistics.median(rates):9.0f} maps/s  (median of {repeats} x {count} maps)",
            flush=True,
        )


def bench_ingestion(sizes: List[int], fmt: str, modes: List[str], repeats: int, workdir: str) -> None:
    """Print examples/s of WaferExampleGen under LocalDagRunner for each size and Beam mode."""
    from tfx import v1 as tfx

    from components.wafer_example_gen import WaferExampleGen
    from spanet.data import GeneratorConfig, iter_wafer_maps, write_dataset

    for size in sizes:
        data = os.path.join(workdir, f"data-{size}")
        out = os.path.join(data, "Wafer_Map_Datasets.npz") if fmt == "npz" else data
        config = GeneratorConfig(min_size=52, max_size=52) if fmt == "npz" else GeneratorConfig()
        t = time.perf_counter()
        write_dataset(iter_wafer_maps(size, 0, config), out, fmt, total=size)
        print(f"wrote {size} maps as {fmt} in {time.perf_counter() - t:.1f}s", flush=True)
        for mode in modes:
            times = []
            for r in range(repeats):
                root = os.path.join(workdir, f"run-{size}-{mode}-{r}")
                gen = WaferExampleGen(data_path=data, data_format=fmt, seed=0)
                pipeline = tfx.dsl.Pipeline(
                    pipeline_name="bench-ingest",
                    pipeline_root=root,
                    components=[gen],
                    metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                        root + ".db"
                    ),
                    beam_pipeline_args=MODES[mode],
                )
                t = time.perf_counter()
                tfx.orchestration.LocalDagRunner().run(pipeline)
                times.append(time.perf_counter() - t)
                shutil.rmtree(root, ignore_errors=True)
            wall = statistics.median(times)
            print(
                f"ingest {fmt} {size:>7} maps {mode:>16}: {wall:7.1f}s  {size / wall:8.0f} examples/s "
                f"(median of {repeats}, includes the component's fixed start-up)",
                flush=True,
            )
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated map counts")
    parser.add_argument("--format", default="png", choices=("png", "npz", "g85"))
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated Beam modes")
    parser.add_argument("--generate-count", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3, help="repeats for generation (ingestion: --ingest-repeats)")
    parser.add_argument("--ingest-repeats", type=int, default=1)
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    bench_generation(args.generate_count, args.repeats)
    if not args.skip_ingest:
        workdir = tempfile.mkdtemp(prefix="bench-ingest-")
        try:
            sizes = [int(s) for s in args.sizes.split(",") if s]
            bench_ingestion(sizes, args.format, args.modes.split(","), args.ingest_repeats, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
