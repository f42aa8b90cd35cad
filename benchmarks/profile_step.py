"""Where a training step's time goes: TensorFlow's own profiler over SP&A-Net training steps, per op.

    python benchmarks/profile_step.py                  # default model, 64x64x1, batch 64, 16 profiled steps
    python benchmarks/profile_step.py --inference      # the frozen inference graph instead
    python benchmarks/profile_step.py --markdown docs/results/step_profile.md --json step_profile.json

The model is built, compiled and warmed up as ``bench_model.py`` does (the Trainer's loss and
optimizer); then one ``fit`` pass of ``--steps`` batches runs under ``tf.profiler``. The trace's
kernel events on TensorFlow's compute threads are summed per op type and per part of the network.
Times are thread time: ops run two at a time on the two inter-op threads, so the per-op sums exceed
the wall time; the shares are what each op type costs of all op time.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import pipeline.startup  # noqa: E402,F401  (the shared start-up, before TensorFlow is imported)

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, Iterable, List, Optional, Tuple  # noqa: E402

INPUT_SHAPE, NUM_CLASSES = (64, 64, 1), 9
#: Parts of the network, matched in this order against an op's node name.
ROLES = (
    ("attention", "attention"),
    ("self-proliferation: 1x1 intrinsic", "intrinsic"),
    ("self-proliferation: cheap depthwise", "cheap"),
    ("strided depthwise", "strided_dw/"),
    ("shortcut depthwise", "shortcut_dw/"),
    ("shortcut 1x1", "shortcut_proj/"),
    ("BatchNorm", "_bn/"),
    ("stem, head, embedding, classifier", ("stem", "head", "embedding", "logits")),
    ("optimizer update", ("SGD", "Momentum")),
)

#: One kernel execution: (node name, op type, thread, start in ps, duration in ps).
Event = Tuple[str, str, str, int, int]


def profile_inference(steps: int, batch: int, log_dir: str) -> float:
    """Runs ``steps`` batches through the default SP&A-Net's frozen inference graph (what the exported
    serving signature runs) under the profiler; returns their wall seconds."""
    import numpy as np

    from spanet import build_spanet
    from spanet._keras import tf
    from spanet.export import FrozenInference

    frozen = FrozenInference(build_spanet(num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE))
    rng = np.random.RandomState(0)
    batches = [tf.constant(rng.uniform(size=(batch, *INPUT_SHAPE)).astype(np.float32)) for _ in range(steps)]
    for images in batches[:3]:  # warm up
        frozen(images).numpy()
    tf.profiler.experimental.start(log_dir)
    started = time.perf_counter()
    for images in batches:
        frozen(images).numpy()
    wall = time.perf_counter() - started
    tf.profiler.experimental.stop()
    return wall


def profile_training(steps: int, batch: int, log_dir: str) -> float:
    """Runs ``steps`` training steps of the default SP&A-Net under the profiler; returns their wall seconds."""
    import numpy as np

    from spanet import CircleLoss, build_spanet, make_optimizer
    from spanet._keras import tf
    from spanet.input_pipeline import without_autotuning
    from spanet.tracing import trace_once

    model = build_spanet(num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE)
    model.compile(optimizer=make_optimizer("nag", 1e-3), loss=CircleLoss())
    trace_once(model)
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(batch * steps, *INPUT_SHAPE)).astype(np.float32)
    labels = rng.randint(0, NUM_CLASSES, size=batch * steps)
    dataset = without_autotuning(tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).cache().prefetch(2))
    model.fit(dataset, epochs=2, verbose=0)  # trace, warm up, fill the cache
    tf.profiler.experimental.start(log_dir)
    started = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    wall = time.perf_counter() - started
    tf.profiler.experimental.stop()
    return wall


def kernel_events(log_dir: str) -> Iterable[Event]:
    """The op executions on TensorFlow's compute threads in the newest trace under ``log_dir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        raise SystemExit(f"the profiler wrote no trace under {log_dir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as handle:
        space.ParseFromString(handle.read())
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name
            if ":" not in name or "::" in name:  # executor bookkeeping (ExecutorState::Process), not an op
                continue
            node, op_type = name.rsplit(":", 1)
            yield (
                node,
                op_type.replace("_MklNative", "").replace("_Mkl", ""),
                line.name,
                event.offset_ps,
                event.duration_ps,
            )


def role_of(node: str) -> str:
    """The part of the network an op belongs to, from its node name (a scope TensorFlow made unique by a
    second trace, as ``shortcut_dw_1/`` for the second half of a batch, counts as its first)."""
    node = re.sub(r"_\d+/", "/", node)
    for role, keys in ROLES:
        if any(key in node for key in ((keys,) if isinstance(keys, str) else keys)):
            return role
    return "other (loss, reshapes, variable reads)"


def summarise(events: List[Event], steps: int, wall_s: float) -> Dict[str, Any]:
    """Per-op-type and per-role thread milliseconds per step, with shares and op counts."""
    by_type: Dict[str, float] = collections.Counter()
    counts: Dict[str, int] = collections.Counter()
    by_role: Dict[str, float] = collections.Counter()
    by_pass: Dict[str, float] = collections.Counter()
    for node, op_type, _thread, _start, duration in events:
        milliseconds = duration / 1e9 / steps
        by_type[op_type] += milliseconds
        counts[op_type] += 1
        role = role_of(node)
        by_role[role] += milliseconds
        phase = "optimizer" if role == "optimizer update" else "backward" if "gradient_tape" in node else "forward"
        by_pass[phase] += milliseconds
    total = sum(by_type.values())

    def table(values: Dict[str, float]) -> List[Dict[str, Any]]:
        return [
            {
                "name": name,
                "ms_per_step": round(ms, 2),
                "share": round(ms / total, 4),
                "ops_per_step": round(counts[name] / steps, 1) if name in counts else None,  # op types only
            }
            for name, ms in sorted(values.items(), key=lambda item: -item[1])
        ]

    return {
        "steps": steps,
        "wall_ms_per_step": round(1000 * wall_s / steps, 1),
        "op_thread_ms_per_step": round(total, 1),
        "ops_per_step": round(sum(counts.values()) / steps),
        "by_op_type": table(by_type),
        "by_part": table(by_role),
        "by_pass": table(by_pass),
    }


def markdown(summary: Dict[str, Any], top: int = 15) -> str:
    """The summary as Markdown tables (the op types beyond ``top`` folded into one row)."""
    lines = [
        f"{summary['pass'].capitalize()} of SP&A-Net (64x64x1, batch {summary['batch']}), {summary['steps']} "
        "profiled steps: "
        f"{summary['wall_ms_per_step']} ms wall a step, {summary['op_thread_ms_per_step']} ms of op time on the "
        f"compute threads, {summary['ops_per_step']} ops a step.",
        "",
    ]
    for key, title in (("by_pass", "pass"), ("by_part", "part of the network"), ("by_op_type", "op type")):
        rows = summary[key]
        lines += [f"| {title} | ms / step | share |", "|---|---:|---:|"]
        shown, rest = rows[:top], rows[top:]
        lines += [f"| {row['name']} | {row['ms_per_step']:.1f} | {100 * row['share']:.1f} % |" for row in shown]
        if rest:
            ms, share = sum(r["ms_per_step"] for r in rest), sum(r["share"] for r in rest)
            lines.append(f"| {len(rest)} other op types | {ms:.1f} | {100 * share:.1f} % |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16, help="training steps to profile (default 16)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--inference", action="store_true", help="profile the frozen inference graph instead of training steps"
    )
    parser.add_argument("--json", help="also write the summary to this JSON file")
    parser.add_argument("--markdown", help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    for option in ("steps", "batch"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1; got {getattr(args, option)}")
    with tempfile.TemporaryDirectory(prefix="profile-step-") as log_dir:
        what = "frozen inference batches" if args.inference else "training steps"
        print(f"profiling {args.steps} {what} at batch {args.batch} ...", flush=True)
        wall = (profile_inference if args.inference else profile_training)(args.steps, args.batch, log_dir)
        summary = {
            "batch": args.batch,
            "pass": "inference" if args.inference else "training",
            **summarise(list(kernel_events(log_dir)), args.steps, wall),
        }
    text = markdown(summary)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=1)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
