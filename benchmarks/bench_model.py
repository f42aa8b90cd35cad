"""Model speed on this CPU: parameters, FLOPs / image, training and inference images/s (medians).

    python benchmarks/bench_model.py                 # SP&A-Net variants + baselines, 64x64x1, batch 64
    python benchmarks/bench_model.py --quick         # fewer repeats, SP&A-Net variants only

The published code's behaviour (single-channel attention softmax, tf.keras fit / predict)
is measured in the same run as the baseline, because these machines are noisy.
Variants: the paper's attention (softmax over positions), fewer Python round trips
(steps_per_execution), XLA (jit_compile), mixed bfloat16, and a BN-folded inference
graph through a plain tf.function. Accuracy-relevant settings (architecture, parameter
count, batch) are identical across SP&A-Net variants.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable, Dict, List, Optional  # noqa: E402

import numpy as np  # noqa: E402

from spanet import CircleLoss, build_model, build_spanet, make_optimizer  # noqa: E402
from spanet._keras import keras, tf  # noqa: E402


@dataclass
class Variant:
    """One configuration to measure."""

    name: str
    build: Callable[[], keras.Model]
    steps_per_execution: int = 1
    jit_compile: bool = False
    bfloat16: bool = False
    folded_inference: bool = False
    results: Dict[str, float] = field(default_factory=dict)


def flops_per_image(model: keras.Model, input_shape) -> float:
    """Floating-point operations of one inference (multiply-add = 2), from TF's profiler on a frozen graph."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, *input_shape], tf.float32))
    graph_def = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options)
    return float(profile.total_float_ops)


def fold_batchnorm(model: keras.Model) -> Callable:
    """An inference function whose graph has BatchNorm folded into constants (grappler then fuses conv + bias + relu)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([None, *model.input_shape[1:]], tf.float32))
    return convert_variables_to_constants_v2(concrete)


def _median_rate(images: int, run: Callable[[], None], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(variant: Variant, input_shape, batch: int, steps: int, repeats: int) -> Dict[str, float]:
    """Training and inference images/s (medians over ``repeats``), parameters and FLOPs."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if variant.bfloat16 else "float32")
    try:
        model = variant.build()
        rng = np.random.RandomState(0)
        x = rng.uniform(size=(batch * steps, *input_shape)).astype(np.float32)
        y = rng.randint(0, model.output_shape[-1], size=batch * steps)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(2)
        model.compile(
            optimizer=make_optimizer("nag", 1e-3), loss=CircleLoss(),
            steps_per_execution=variant.steps_per_execution, jit_compile=variant.jit_compile,
        )
        model.fit(dataset, epochs=1, verbose=0)  # trace and warm up
        train = _median_rate(len(x), lambda: model.fit(dataset, epochs=1, verbose=0), repeats)
        if variant.folded_inference:
            folded = fold_batchnorm(model)
            batches = [tf.constant(x[i:i + batch]) for i in range(0, len(x), batch)]
            folded(batches[0])

            def infer():
                for b in batches:
                    folded(b)
        else:
            model.predict(x, batch_size=batch, verbose=0)

            def infer():
                model.predict(x, batch_size=batch, verbose=0)
        predict = _median_rate(len(x), infer, repeats)
        keras.mixed_precision.set_global_policy("float32")
        flops = flops_per_image(variant.build(), input_shape)  # counted in float32 for every variant
        return {"params": model.count_params(), "flops": flops, "train": train, "predict": predict}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def spanet_variants(num_classes: int, input_shape) -> List[Variant]:
    def paper():
        return build_spanet(num_classes=num_classes, input_shape=input_shape)

    def reference():
        return build_spanet(num_classes=num_classes, input_shape=input_shape, reference_attention=True)

    return [
        Variant("published-code behaviour (single-channel softmax)", reference),
        Variant("SP&A-Net, paper attention", paper),
        Variant("  + steps_per_execution=16", paper, steps_per_execution=16),
        Variant("  + steps_per_execution=16, BN-folded inference", paper, steps_per_execution=16, folded_inference=True),
        Variant("  + XLA (jit_compile)", paper, jit_compile=True),
        Variant("  + mixed bfloat16", paper, bfloat16=True),
    ]


def baseline_variants(num_classes: int, input_shape) -> List[Variant]:
    names = ["ghostnet", "mobilenet_v2", "mobilenet_v3", "resnet50_gc"]
    return [Variant(name, (lambda n=name: build_model(n, num_classes=num_classes, input_shape=input_shape)))
            for name in names]


def cpu_peak_gflops() -> Optional[float]:
    """FP32 peak of this CPU if it can be read: cores x GHz x 32 FLOP/cycle (AVX-512 FMA, 2 units)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            text = handle.read()
        mhz = max(float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz"))
        return os.cpu_count() * mhz / 1000.0 * 32
    except (OSError, ValueError):
        return None


def all_variants(num_classes: int, input_shape, quick: bool) -> List[Variant]:
    return spanet_variants(num_classes, input_shape) + ([] if quick else baseline_variants(num_classes, input_shape))


def run_variant_in_subprocess(index: int, args: argparse.Namespace, repeats: int) -> Dict[str, float]:
    """Measures one variant in a fresh process; returns its results or {"error": ...}."""
    command = [sys.executable, os.path.abspath(__file__), "--variant", str(index), "--batch", str(args.batch),
               "--steps", str(args.steps), "--repeats", str(repeats)] + (["--quick"] if args.quick else [])
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit code {completed.returncode}: {tail[:80]}"}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repeats, SP&A-Net variants only")
    parser.add_argument("--variant", type=int, help=argparse.SUPPRESS)  # internal: measure one variant, print JSON
    args = parser.parse_args(argv)
    input_shape, num_classes = (64, 64, 1), 9
    repeats = 3 if args.quick and args.variant is None else args.repeats
    variants = all_variants(num_classes, input_shape, args.quick)
    if args.variant is not None:
        print(json.dumps(measure(variants[args.variant], input_shape, args.batch, args.steps, repeats)))
        return 0

    peak = cpu_peak_gflops()
    print(f"CPU: {os.cpu_count()} cores, FP32 peak ~{peak:.0f} GFLOP/s" if peak else f"CPU: {os.cpu_count()} cores")
    print(f"input {input_shape}, batch {args.batch}, {args.steps} batches per pass, median of {repeats}, one process per row\n")
    header = f"{'model':<52} {'params':>10} {'MFLOP/img':>10} {'train img/s':>12} {'infer img/s':>12} {'infer GFLOP/s':>14}"
    print(header)
    print("-" * len(header), flush=True)
    for index, variant in enumerate(variants):
        r = run_variant_in_subprocess(index, args, repeats)
        if "error" in r:
            print(f"{variant.name:<52} failed: {r['error']}", flush=True)
            continue
        variant.results = r
        gflops = r["flops"] * r["predict"] / 1e9 if np.isfinite(r["flops"]) else float("nan")
        print(f"{variant.name:<52} {r['params']:>10,} {r['flops'] / 1e6:>10.1f} {r['train']:>12.0f} "
              f"{r['predict']:>12.0f} {gflops:>14.1f}", flush=True)
    base = variants[0].results
    if base:
        print("\nAgainst the published-code behaviour in this run:")
        for variant in variants[1:6]:
            if variant.results:
                print(f"  {variant.name.strip():<50} train x{variant.results['train'] / base['train']:.2f}, "
                      f"inference x{variant.results['predict'] / base['predict']:.2f}")
        if peak:
            best = max((v.results.get("predict", 0) * v.results.get("flops", 0) for v in variants[1:6] if v.results), default=0)
            print(f"  best inference arithmetic rate {best / 1e9:.1f} GFLOP/s = {100 * best / 1e9 / peak:.1f}% of the FP32 peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
