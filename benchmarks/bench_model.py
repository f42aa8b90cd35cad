"""Model speed on this CPU: parameters, FLOPs / image, training and inference images/s (medians).

    python benchmarks/bench_model.py                 # SP&A-Net variants, then the baselines; 64x64x1, batch 64
    python benchmarks/bench_model.py --quick         # SP&A-Net variants only, 3 rounds
    python benchmarks/bench_model.py --json out.json --plot speed.png   # also keep the figures

Every variant lives in a worker process of its own (built, compiled and warmed up
once); the timed passes are then interleaved, one pass per variant per round, so
that the noise of a shared machine falls on every row alike. Rows show the median
over rounds and, in brackets, the best round. The datasets run with tf.data's
autotuner off (``spanet.input_pipeline``): with it on, every ``fit`` and ``predict``
pass ended on the autotuner's next wake-up, so rates came out as 200, 400 or 783.

Rows: the published code's behaviour (single-channel attention softmax, every layer
run separately, on TensorFlow's default thread pools: the baseline), the same on the
project's threads (one per op, ``spanet.threads``), the
paper's attention layer by layer, the library's CPU fast paths on TensorFlow's
threads, then on the project's threads (``fused=True``, the default: 1x1 convolutions as
matrix products, BatchNorm folded in inference, one-op concat gradient, training on
channel parts (``spanet.layers.parts``), depthwise training onto maps of at most four positions as a batched matrix
product, inference on each batch's two halves side by side (``spanet.halves``);
and ``make_optimizer``'s NAG on TensorFlow's fused update kernels, where the
layer-by-layer rows use the stock Keras SGD), the same inference in one pass per batch (what
the halves give), then what frozen graphs (as the exported serving signature runs
them, saved and reloaded), 16 training steps per call (``steps_per_execution``), XLA and bfloat16 give
on top. Every model is compiled with the Trainer's ``steps_per_execution`` (``components.config``)
unless its row says otherwise, and traced as the Trainer traces it (``spanet.tracing.trace_once``).
Architecture, parameter count and batch are the same in every SP&A-Net row. The baselines
(plain Keras models) run on TensorFlow's threads. GFLOP/s
columns are the achieved arithmetic rate of the medians (training: three passes' worth
of FLOPs per image); the per-op split of a training step is ``benchmarks/profile_step.py``'s.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import pipeline.startup  # noqa: E402,F401  (the shared start-up, before TensorFlow is imported)
from components.config import TrainingConfig  # noqa: E402  (no TensorFlow import)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Dict, List, Mapping, Optional  # noqa: E402

INPUT_SHAPE, NUM_CLASSES = (64, 64, 1), 9
TARGET_TRAIN, TARGET_INFER = 400.0, 1500.0  # images/s on this 2-core machine (issue 2)
TARGET_SPEED_UP = 2.0  # training and Keras predict against the published code, same run (issue 15)
#: The Trainer's training loop (``components.config``): every row trains with it unless it says otherwise.
TRAINER_STEPS_PER_EXECUTION = TrainingConfig.steps_per_execution
#: A training step's arithmetic against one inference: forward, then gradients for inputs and weights.
TRAIN_FLOPS_PER_INFERENCE = 3.0


@dataclass
class Variant:
    """One configuration to measure."""

    name: str
    model: str = "spanet"  # "spanet" or a build_model() baseline name
    build_kwargs: Dict[str, Any] = field(default_factory=dict)
    steps_per_execution: int = TRAINER_STEPS_PER_EXECUTION
    jit_compile: bool = False
    bfloat16: bool = False
    # "predict" (Keras), "frozen" (constant graph, a call per batch), "frozen16" (16 batches a call),
    # "exported" (the frozen graph as a saved and reloaded SavedModel signature, as a server runs it)
    inference: str = "predict"
    train: bool = True  # False: the training row equals another row's, so it is not repeated
    infer: bool = True  # False: the inference equals another row's (the row varies the training loop only)
    fused_optimizer: bool = True  # False: the stock keras.optimizers.SGD instead of make_optimizer's FusedSGD
    batches: int = 16  # batches per timed pass (fewer for the slow variants)
    halves: bool = True  # False: inference in one pass per batch, not on its two halves side by side
    # True: TensorFlow's own thread pools (a thread per core for every op), as the published code runs;
    # False: the project's setting, one thread per op on this 2-core machine (spanet.threads)
    tensorflow_threads: bool = False


def spanet_variants() -> List[Variant]:
    return [
        Variant(
            "published code: 1-channel softmax, layer by layer",
            build_kwargs=dict(reference_attention=True, fused=False),
            fused_optimizer=False,
            tensorflow_threads=True,
        ),
        Variant(
            "  published code on the project's threads (1 per op)",
            build_kwargs=dict(reference_attention=True, fused=False),
            fused_optimizer=False,
        ),
        Variant(
            "SP&A-Net, paper attention, layer by layer",
            build_kwargs=dict(fused=False),
            fused_optimizer=False,
            tensorflow_threads=True,
        ),
        Variant("SP&A-Net, CPU fast paths, TensorFlow's threads", tensorflow_threads=True),
        Variant("SP&A-Net, CPU fast paths (fused=True, default)"),
        Variant("  Keras predict in one pass per batch (no halves)", halves=False, train=False),
        Variant("  + frozen inference graph", inference="frozen", train=False),
        Variant("  frozen graph in one pass per batch (no halves)", inference="frozen", halves=False, train=False),
        Variant("  + frozen graph, 16 batches per call", inference="frozen16", train=False),
        Variant("  exported serving signature (frozen, SavedModel)", inference="exported", train=False),
        Variant("  + 16 steps per execution (one while loop)", steps_per_execution=16, infer=False),
        Variant("  + XLA (jit_compile)", jit_compile=True, batches=2),
        Variant("  + mixed bfloat16", bfloat16=True, batches=4),
    ]


def baseline_variants() -> List[Variant]:
    # Plain Keras models, one pass per batch: TensorFlow's own threads suit them (ResNet-50's large
    # convolutions inferred at 185 img/s on one thread per op, 267 on TensorFlow's, 2026-12-05).
    names = ("ghostnet", "mobilenet_v2", "mobilenet_v3", "resnet50_gc")
    return [Variant(name, model=name, tensorflow_threads=True) for name in names]


# ----------------------------------------------------------------------------- worker side


def flops_per_image(build: Callable) -> float:
    """Floating-point operations of one inference (multiply-add = 2), from TF's profiler on a frozen graph."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from spanet._keras import tf

    model = build()
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, *INPUT_SHAPE], tf.float32))
    graph_def = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profile = tf.compat.v1.profiler.profile(
            graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
        )
    return float(profile.total_float_ops)


def exported_signature(model, directory: str) -> Callable:
    """The model's frozen inference as a served SavedModel signature: exported, loaded, its function."""
    from spanet._keras import tf
    from spanet.export import FrozenInference, export_saved_model

    frozen = FrozenInference(model)
    spec = tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name="images")
    serve = tf.function(lambda images: {"logits": frozen(images)}, input_signature=[spec], autograph=False)
    path = os.path.join(directory, "model")
    export_saved_model(path, {"serving_default": serve})
    return tf.saved_model.load(path).signatures["serving_default"]


class Worker:
    """Builds one variant, warms it up, then times one training or inference pass per request."""

    def __init__(self, variant: Variant, batch: int):
        import numpy as np

        from spanet import CircleLoss, build_model, build_spanet, make_optimizer
        from spanet._keras import keras, tf
        from spanet.export import FrozenInference
        from spanet.input_pipeline import without_autotuning
        from spanet.tracing import trace_once

        self.variant = variant
        if variant.model == "spanet":

            def build():
                return build_spanet(num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE, **variant.build_kwargs)
        else:

            def build():
                return build_model(variant.model, num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE)

        self.flops = flops_per_image(build)  # counted in float32 for every variant
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if variant.bfloat16 else "float32")
        self.model = build()
        rng = np.random.RandomState(0)
        count = batch * variant.batches
        self.x = rng.uniform(size=(count, *INPUT_SHAPE)).astype(np.float32)
        y = rng.randint(0, NUM_CLASSES, size=count)
        # Autotuning off: otherwise every pass ends on the autotuner's next wake-up (2.56 s, 5.12 s, ...).
        self.dataset = without_autotuning(
            tf.data.Dataset.from_tensor_slices((self.x, y)).batch(batch).cache().prefetch(2)
        )
        images = without_autotuning(tf.data.Dataset.from_tensor_slices(self.x).batch(batch).cache().prefetch(2))
        if variant.fused_optimizer:
            optimizer = make_optimizer("nag", 1e-3)
        else:
            optimizer = keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True)
        self.model.compile(
            optimizer=optimizer,
            loss=CircleLoss(),
            steps_per_execution=variant.steps_per_execution,
            jit_compile=variant.jit_compile,
        )
        trace_once(self.model)  # as the Trainer traces: one trace, no AutoGraph, steps in a while loop
        if variant.train:
            self.model.fit(self.dataset, epochs=1, verbose=0)  # trace and warm up
        self.infer = None
        if not variant.infer:
            return
        if variant.inference == "predict":
            # The same layers in a plain functional model predict in one pass per batch.
            predictor = self.model if variant.halves else keras.Model(self.model.inputs, self.model.outputs)
            self.infer = lambda: predictor.predict(images, verbose=0)
        elif variant.inference in ("frozen", "exported"):
            if variant.inference == "frozen":
                frozen = FrozenInference(self.model, halves=variant.halves)
            else:
                self._export_dir = tempfile.TemporaryDirectory(prefix="bench-model-")  # removed with the worker
                frozen = exported_signature(self.model, self._export_dir.name)
            batches = [tf.constant(self.x[i : i + batch]) for i in range(0, count, batch)]
            self.infer = lambda: [frozen(b) for b in batches]
        else:
            frozen = FrozenInference(self.model, batches_per_call=variant.batches)
            stacked = tf.constant(self.x.reshape(variant.batches, batch, *INPUT_SHAPE))
            self.infer = lambda: frozen(stacked)
        self.infer()

    def rate(self, what: str) -> float:
        """Images per second of one pass."""
        start = time.perf_counter()
        if what == "train":
            self.model.fit(self.dataset, epochs=1, verbose=0)
        else:
            self.infer()
        return len(self.x) / (time.perf_counter() - start)


def worker_main(variant: Variant, batch: int) -> int:
    """The worker loop: print a ready line, then answer 'train' / 'infer' lines with a rate each."""
    try:
        worker = Worker(variant, batch)
    except Exception as error:  # report, do not hang the parent
        print(json.dumps({"error": f"{type(error).__name__}: {str(error)[:120]}"}), flush=True)
        return 1
    print(json.dumps({"ready": True, "params": worker.model.count_params(), "flops": worker.flops}), flush=True)
    for line in sys.stdin:
        try:
            print(json.dumps({"rate": worker.rate(line.strip())}), flush=True)
        except Exception as error:
            print(json.dumps({"error": f"{type(error).__name__}: {str(error)[:120]}"}), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent side


def worker_environment(variant: Variant, environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment of ``variant``'s worker: the project's threads per op (inherited from this
    process), or TensorFlow's default of one per core where the variant asks for it."""
    from spanet.threads import INTRA_OP_THREADS_ENV, available_cores

    environment = dict(environ)
    if variant.tensorflow_threads:
        environment[INTRA_OP_THREADS_ENV] = str(available_cores())
    return environment


class WorkerProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, index: int, group: str, batch: int, variant: Variant):
        command = [sys.executable, os.path.abspath(__file__), "--worker", group, str(index), "--batch", str(batch)]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=worker_environment(variant, os.environ),
        )
        self.info = self._read()

    def _read(self) -> Dict[str, Any]:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        return {"error": f"worker exited with code {self.process.wait()}"}

    def rate(self, what: str) -> Optional[float]:
        if "error" in self.info:
            return None
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()
        reply = self._read()
        if "error" in reply:
            self.info = reply
            return None
        return reply["rate"]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait()


def cpu_peak_gflops() -> Optional[float]:
    """FP32 peak of this CPU if it can be read: cores x GHz x 32 FLOP/cycle (AVX-512 FMA, 2 units)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            text = handle.read()
        mhz = max(float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz"))
        return os.cpu_count() * mhz / 1000.0 * 32
    except (OSError, ValueError):
        return None


def measure_group(variants: List[Variant], group: str, batch: int, rounds: int) -> List[Dict[str, Any]]:
    """Starts one worker per variant, then runs ``rounds`` interleaved rounds; returns a row per variant."""
    workers = []
    for index, variant in enumerate(variants):
        print(f"  starting {variant.name.strip()} ...", end="", flush=True)
        started = time.perf_counter()
        workers.append(WorkerProcess(index, group, batch, variant))
        print(f" {time.perf_counter() - started:.0f} s" if "error" not in workers[-1].info else " failed", flush=True)
    rates: List[Dict[str, List[float]]] = [{"train": [], "infer": []} for _ in variants]
    try:
        for round_index in range(rounds):
            for what in ("train", "infer"):
                for variant, worker, rate in zip(variants, workers, rates):
                    if not (variant.train if what == "train" else variant.infer):
                        continue
                    value = worker.rate(what)
                    if value is not None:
                        rate[what].append(value)
            print(f"  round {round_index + 1}/{rounds} done", flush=True)
    finally:
        for worker in workers:
            worker.close()
    rows = []
    for variant, worker, rate in zip(variants, workers, rates):
        row: Dict[str, Any] = {"name": variant.name, **{k: v for k, v in worker.info.items() if k != "ready"}}
        for what in ("train", "infer"):
            if rate[what]:
                row[what] = statistics.median(rate[what])
                row[f"{what}_best"] = max(rate[what])
                row[f"{what}_rounds"] = [round(v, 1) for v in rate[what]]
        rows.append(row)
    return rows


def format_rate(row: Dict[str, Any], what: str) -> str:
    if what not in row:
        return "–"
    return f"{row[what]:.0f} ({row[what + '_best']:.0f})"


def gflops(row: Dict[str, Any], what: str) -> float:
    """Achieved arithmetic rate of a row's median; training counts ``TRAIN_FLOPS_PER_INFERENCE`` passes."""
    if what not in row:
        return float("nan")
    passes = TRAIN_FLOPS_PER_INFERENCE if what == "train" else 1.0
    return row["flops"] * passes * row[what] / 1e9


def format_gflops(row: Dict[str, Any], what: str) -> str:
    return f"{gflops(row, what):.1f}" if what in row else "–"


def print_table(rows: List[Dict[str, Any]]) -> None:
    header = (
        f"{'model':<52} {'params':>10} {'MFLOP/img':>10} {'train img/s':>14} {'GFLOP/s':>8} "
        f"{'infer img/s':>14} {'GFLOP/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row and "params" not in row:
            print(f"{row['name']:<52} failed: {row['error']}")
            continue
        print(
            f"{row['name']:<52} {row['params']:>10,} {row['flops'] / 1e6:>10.1f} {format_rate(row, 'train'):>14} "
            f"{format_gflops(row, 'train'):>8} {format_rate(row, 'infer'):>14} {format_gflops(row, 'infer'):>8}"
        )


def print_summary(rows: List[Dict[str, Any]], peak: Optional[float]) -> None:
    base = rows[0]
    if "train" not in base or "infer" not in base:
        return
    print("\nAgainst the published code's behaviour, medians of the same rounds:")
    for row in rows[1:]:
        parts = [f"{what} x{row[what] / base[what]:.2f}" for what in ("train", "infer") if what in row]
        print(f"  {row['name'].strip():<50} {', '.join(parts)}")
    default = next((row for row in rows if "default" in row["name"]), {})
    if "train" not in default or "infer" not in default:
        print("\nThe default row has no figures (its worker failed): no targets to check.")
        return
    fp32 = [row for row in rows if "bfloat16" not in row["name"] and "XLA" not in row["name"]]
    best_infer = max(fp32, key=lambda row: row.get("infer", 0))
    print(
        f"\nTargets (float32, same architecture, parameters and batch; the default model, {default['name'].strip()}):"
    )
    for what, label in (("train", "training"), ("infer", "Keras predict")):
        ratio = default[what] / base[what]
        verdict = "met" if ratio >= TARGET_SPEED_UP else "missed"
        # Three decimals, so that a ratio just under the target never prints as the target.
        print(f"  {label:<14} x{ratio:.3f} the published code (target x{TARGET_SPEED_UP:.1f}) -> {verdict}")
        published = [row for row in rows if "published" in row["name"] and what in row]
        best = max(published, key=lambda row: row[what])
        if best is not base:
            print(f"  {'':<14} x{default[what] / best[what]:.3f} its fastest setting here ({best['name'].strip()})")
    print(
        f"  training  >= {TARGET_TRAIN:.0f} img/s: median {default['train']:.0f} "
        f"-> {'met' if default['train'] >= TARGET_TRAIN else 'missed'}"
    )
    print(
        f"  inference >= {TARGET_INFER:.0f} img/s: median {best_infer['infer']:.0f} "
        f"({best_infer['name'].strip()}) -> {'met' if best_infer['infer'] >= TARGET_INFER else 'missed'}"
    )
    if peak:
        for row, what in ((default, "train"), (best_infer, "infer")):
            rate = gflops(row, what)
            print(
                f"  {what:<5} arithmetic rate {rate:.1f} GFLOP/s = {100 * rate / peak:.1f}% of the ~{peak:.0f} "
                f"GFLOP/s FP32 peak ({row['name'].strip()})"
            )


def plot_rows(rows: List[Dict[str, Any]], path: str) -> None:
    """Horizontal bars of training and inference images/s per variant, with the targets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["name"].strip() for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5), sharey=True)
    for axis, what, target in ((axes[0], "train", TARGET_TRAIN), (axes[1], "infer", TARGET_INFER)):
        values = [row.get(what, 0.0) for row in rows]
        axis.barh(range(len(rows)), values, color=["#888888"] + ["#3a7dc9"] * (len(rows) - 1))
        axis.axvline(target, color="#c0392b", linestyle="--", label=f"target {target:.0f}")
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:.0f}" if value else " –", va="center", fontsize=8)
        axis.set_title(f"{'training' if what == 'train' else 'inference'} images/s (median)")
        axis.legend(loc="lower right", fontsize=8)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, --quick 3)")
    parser.add_argument("--quick", action="store_true", help="SP&A-Net variants only, 3 rounds")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--plot", help="also draw the SP&A-Net rows as a bar chart (PNG)")
    parser.add_argument("--worker", nargs=2, metavar=("GROUP", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    groups = {"spanet": spanet_variants, "baselines": baseline_variants}
    if args.worker:
        group, index = args.worker
        return worker_main(groups[group]()[int(index)], args.batch)

    rounds = args.rounds or (3 if args.quick else 5)
    peak = cpu_peak_gflops()
    print(f"CPU: {os.cpu_count()} cores" + (f", FP32 peak ~{peak:.0f} GFLOP/s" if peak else ""))
    print(
        f"input {INPUT_SHAPE}, batch {args.batch}, {rounds} interleaved rounds; cells: median (best round)\n",
        flush=True,
    )
    results: Dict[str, List[Dict[str, Any]]] = {}
    for group in ["spanet"] + ([] if args.quick else ["baselines"]):
        print(f"[{group}]", flush=True)
        results[group] = measure_group(groups[group](), group, args.batch, rounds)
        print()
        print_table(results[group])
        if group == "spanet":
            print_summary(results[group], peak)
        print(flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"cpu_peak_gflops": peak, "batch": args.batch, "rounds": rounds, **results}, handle, indent=1)
    if args.plot:
        plot_rows(results["spanet"], args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
