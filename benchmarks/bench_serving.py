"""Benchmark serving: the gRPC path (client -> local TF Serving stand-in -> SavedModel) vs. the SavedModel in-process.

Measures, in the same run and on the same model and images: latency p50 / p99 at batch 1 and
throughput (images/s) at batch 32, with 1 and 8 concurrent clients (threads; one channel each).
Each setting runs a fixed number of requests, `--repeats` times; the table shows the medians.
Targets checked: gRPC adds <= 15 % at batch 32 (throughput), p99 <= 2 x p50 at batch 1 (gRPC),
zero errors. In the same repeats, the published code's Keras ``predict`` (an SP&A-Net of the served
model's architecture and input, with the published code's single-channel attention softmax and every
layer run separately) runs on pre-decoded images at batch 32 in one call per repeat: the served
model, PNG decoding and the Transform graph included, is compared with it (issue 15).
Loopback only, bounded loops. Not run in tests. Usage:

    python benchmarks/bench_serving.py [--model-base-path DIR] [--repeats 3]

Without --model-base-path a model is trained first with the tests' tiny pipeline config (~2 min).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import pipeline.startup  # noqa: E402,F401  (the shared start-up, before TensorFlow is imported)
from spanet.serving.contract import DEFAULT_SIGNATURE  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    """The benchmark's settings: what is measured and how long."""

    batch_sizes: Sequence[int] = (1, 32)
    client_counts: Sequence[int] = (1, 8)
    #: Requests per setting and repeat (split across the clients), per batch size.
    requests: Dict[int, int] = None  # type: ignore[assignment]
    warmup_requests: int = 8
    repeats: int = 3
    max_overhead: float = 0.15
    max_p99_over_p50: float = 2.0

    def requests_for(self, batch: int) -> int:
        return (self.requests or {1: 400, 32: 48}).get(batch, 48)


@dataclass
class Run:
    latencies_s: List[float]
    images: int
    wall_s: float
    errors: int

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def build_model(work_dir: str) -> str:
    """Train and push a model with the tests' tiny pipeline config; returns the serving base directory."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import tiny_pipeline_config  # noqa: E402  (the tests' tiny config)
    from pipeline.run_local import run

    config = tiny_pipeline_config(work_dir)
    if run(config) != 0:
        raise SystemExit("the tiny pipeline failed: no model to benchmark")
    if not os.path.isdir(config.serving_dir) or not os.listdir(config.serving_dir):
        raise SystemExit(f"the tiny pipeline pushed no model to {config.serving_dir} (not blessed?)")
    return config.serving_dir


class ServeProcess:
    """`spanet serve` on a free loopback port in its own process (so client and server do not share a GIL)."""

    def __init__(self, base: str, workers: int):
        self.base, self.workers, self.port = base, workers, None

    def start(self) -> "ServeProcess":
        import re
        import subprocess

        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spanet.cli",
                "serve",
                "--model-base-path",
                self.base,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--poll-seconds",
                "3600",
                "--max-workers",
                str(self.workers),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        for _ in range(1200):
            text = open(self.log.name).read()
            match = re.search(r"on gRPC 127\.0\.0\.1:(\d+)", text)
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                raise SystemExit(f"spanet serve exited: {text[-2000:]}")
            time.sleep(0.1)
        self.proc.kill()
        raise SystemExit("spanet serve did not start within 2 minutes")

    def stop(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def published_predict(model_dir: str, count: int) -> Optional[Tuple[Callable[[], float], int]]:
    """The published code's Keras ``predict`` at the served model's architecture: a call that returns
    images/s over ``count`` pre-decoded images at batch 32, and the orientations the served model
    averages over per image (each one a forward pass); None if the model is not an SP&A-Net."""
    import json

    import numpy as np

    from components.config import ImageConfig, TrainingConfig
    from components.trainer import OPERATING_POINT_JSON, build_classifier

    with open(os.path.join(model_dir, OPERATING_POINT_JSON), encoding="utf-8") as handle:
        summary = json.load(handle)
    image, training = ImageConfig.from_custom_config(summary), TrainingConfig.from_custom_config(summary)
    if training.model != "spanet":
        return None
    model = build_classifier(len(summary["class_names"]), image, training, reference_attention=True, fused=False)
    if model.count_params() != summary["parameters"]:
        raise SystemExit(
            f"the published-code model has {model.count_params():,} parameters, the served one "
            f"{summary['parameters']:,}: not the same architecture"
        )
    arrays = np.random.RandomState(0).uniform(size=(count, *model.inputs[0].shape[1:])).astype(np.float32)
    model.predict(arrays[:64], batch_size=32, verbose=0)  # trace and warm up

    def rate() -> float:
        started = time.perf_counter()
        model.predict(arrays, batch_size=32, verbose=0)
        return count / (time.perf_counter() - started)

    return rate, training.test_time_orientations


def make_images(count: int) -> List[bytes]:
    from spanet.data.generator import generate_wafer_maps
    from spanet.data.imageio import encode_png

    return [encode_png(r.image) for r in generate_wafer_maps(count, 7, min_size=32, max_size=64)]


def drive(
    call: Callable[[int, List[bytes]], None], images: List[bytes], batch: int, clients: int, requests: int
) -> Run:
    """`clients` threads share `requests` calls of `batch` images; latency of every call and total wall time."""
    per_client = max(1, requests // clients)
    latencies: List[List[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_gate = threading.Barrier(clients + 1)

    def worker(k: int) -> None:
        start_gate.wait()
        for i in range(per_client):
            offset = ((k * per_client + i) * batch) % len(images)
            chunk = (images[offset:] + images[:offset])[:batch]
            t = time.perf_counter()
            try:
                call(k, chunk)
            except Exception:
                errors[k] += 1
                continue
            latencies[k].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return Run([x for xs in latencies for x in xs], per_client * clients * batch, wall, sum(errors))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-base-path", default=None, help="TF Serving base directory (default: train a tiny model)"
    )
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    parser.add_argument("--batch1-requests", type=int, default=400, help="requests per batch-1 setting and repeat")
    parser.add_argument("--batch32-requests", type=int, default=48, help="requests per batch-32 setting and repeat")
    parser.add_argument(
        "--server",
        choices=("subprocess", "in-process"),
        default="subprocess",
        help="run `spanet serve` as its own process (like TF Serving; default) or in this process",
    )
    args = parser.parse_args(argv)
    config = BenchConfig(repeats=args.repeats, requests={1: args.batch1_requests, 32: args.batch32_requests})

    import tensorflow as tf

    from spanet.serving.client import ServingClient
    from spanet.serving.config import ClientConfig, ServerConfig
    from spanet.serving.model_manager import list_versions
    from spanet.serving.server import LocalServer

    base = args.model_base_path or build_model(tempfile.mkdtemp(prefix="bench_serving_"))
    version = list_versions(base)[-1]
    images = make_images(256)
    fn = tf.saved_model.load(os.path.join(base, str(version))).signatures[DEFAULT_SIGNATURE]

    def in_process(_k: int, chunk: List[bytes]) -> None:
        outputs = fn(images=tf.constant(chunk, dtype=tf.string))
        {k: v.numpy() for k, v in outputs.items()}

    if args.server == "subprocess":
        server = ServeProcess(base, max(config.client_counts)).start()
    else:
        server = LocalServer(
            ServerConfig(
                model_base_path=base,
                host="127.0.0.1",
                port=0,
                poll_interval_s=3600,
                max_workers=max(config.client_counts),
            )
        ).start()
    clients = [
        ServingClient(ClientConfig(target=f"127.0.0.1:{server.port}", batch_size=64, timeout_s=60))
        for _ in range(max(config.client_counts))
    ]

    def over_grpc(k: int, chunk: List[bytes]) -> None:
        clients[k].predict_images(chunk)

    published = published_predict(os.path.join(base, str(version)), 32 * config.requests_for(32))
    published_rates: List[float] = []

    results: Dict[tuple, Dict[str, float]] = {}
    try:
        for mode, call in (("in-process", in_process), ("gRPC", over_grpc)):
            for k in range(max(config.client_counts)):  # warm every channel / trace every batch size
                for batch in config.batch_sizes:
                    for _ in range(max(1, config.warmup_requests // 4)):
                        call(k, images[:batch])
        runs_of: Dict[tuple, List[Run]] = {}
        for _ in range(config.repeats):  # modes alternate inside each repeat, so load drift hits both alike
            for batch in config.batch_sizes:
                for n_clients in config.client_counts:
                    for mode, call in (("in-process", in_process), ("gRPC", over_grpc)):
                        runs_of.setdefault((batch, n_clients, mode), []).append(
                            drive(call, images, batch, n_clients, config.requests_for(batch))
                        )
            if published is not None:
                published_rate, _ = published
                published_rates.append(published_rate())
        for batch in config.batch_sizes:
            for n_clients in config.client_counts:
                for mode in ("in-process", "gRPC"):
                    runs = runs_of[(batch, n_clients, mode)]
                    results[(batch, n_clients, mode)] = {
                        "p50_ms": statistics.median(r.pct(50) for r in runs) * 1e3,
                        "p99_ms": statistics.median(r.pct(99) for r in runs) * 1e3,
                        "img_s": statistics.median(r.images / r.wall_s for r in runs),
                        "errors": sum(r.errors for r in runs),
                        "requests": sum(len(r.latencies_s) + r.errors for r in runs),
                    }
                    row = results[(batch, n_clients, mode)]
                    print(
                        f"batch {batch:>2}  clients {n_clients}  {mode:<10}  p50 {row['p50_ms']:7.2f} ms  "
                        f"p99 {row['p99_ms']:7.2f} ms  "
                        f"{row['img_s']:8.0f} img/s  errors {row['errors']}",
                        flush=True,
                    )
    finally:
        for c in clients:
            c.close()
        server.stop()

    print(
        f"\nmodel {base}/{version}; server: {args.server}; medians of {config.repeats} repeats; "
        f"{config.requests_for(1)} requests at batch 1, {config.requests_for(32)} at batch 32 per repeat\n"
    )
    print(
        "| batch | clients | in-process p50 / p99 ms | gRPC p50 / p99 ms | "
        "in-process img/s | gRPC img/s | gRPC overhead | gRPC p99/p50 | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    checks = []
    for batch in config.batch_sizes:
        for n_clients in config.client_counts:
            a, g = results[(batch, n_clients, "in-process")], results[(batch, n_clients, "gRPC")]
            overhead = a["img_s"] / g["img_s"] - 1.0
            ratio = g["p99_ms"] / g["p50_ms"]
            if batch == 32:
                checks.append(
                    (
                        f"gRPC overhead at batch 32, {n_clients} client(s): "
                        f"{overhead:+.1%} (<= {config.max_overhead:.0%})",
                        overhead <= config.max_overhead,
                    )
                )
            if batch == 1:
                checks.append(
                    (
                        f"gRPC p99/p50 at batch 1, {n_clients} client(s): {ratio:.2f} (<= {config.max_p99_over_p50:g}; "
                        f"in-process {a['p99_ms'] / a['p50_ms']:.2f})",
                        ratio <= config.max_p99_over_p50,
                    )
                )
            checks.append((f"gRPC errors at batch {batch}, {n_clients} client(s): {g['errors']} (0)", g["errors"] == 0))
            print(
                f"| {batch} | {n_clients} | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} | "
                f"{g['p50_ms']:.2f} / {g['p99_ms']:.2f} | "
                f"{a['img_s']:.0f} | {g['img_s']:.0f} | {overhead * 100:+.1f}% | "
                f"{ratio:.2f} | {g['errors']} of {g['requests']} |"
            )
    if published_rates:
        _, orientations = published
        base_rate = statistics.median(published_rates)
        print(
            f"\npublished code's Keras predict, same architecture, pre-decoded, batch 32: {base_rate:.0f} img/s "
            "(one forward pass per image)"
        )
        for mode in ("in-process", "gRPC"):
            served = results[(32, 1, mode)]["img_s"]
            print(
                f"  served {mode:<10} at batch 32, 1 client (PNG decoding and Transform included): {served:.0f} "
                f"img/s = x{served / base_rate:.2f}; {orientations} orientation(s) averaged per image: "
                f"{served * orientations:.0f} forward passes/s = x{served * orientations / base_rate:.2f}"
            )
    print("\ntargets:")
    for text, ok in checks:
        print(f"  {'met    ' if ok else 'NOT MET'}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
