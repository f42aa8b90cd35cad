"""Cross-recipe benchmark: the pushed model on its own test split and on a stress set drawn differently.

    python benchmarks/bench_cross_recipe.py                      # the model `make run` pushed
    python benchmarks/bench_cross_recipe.py --train              # run the default pipeline first
    python benchmarks/bench_cross_recipe.py --model-dir DIR --output-root ROOT --count 2700

The in-distribution figures come from the pipeline's own held-out test split (lots the model
never saw, same generator recipe) and from a larger fresh set of the same recipe (another seed,
classes equally often: ~600 defective maps per class, where the test split has ~200, so a class's
miss rate is measured to a few tenths of a percent); the stress figures from `spanet.data.stress`,
a recipe that shares no code or ranges with the training generator. Both go through the served signature
(PNG bytes in, the defect flag and the class out), so they are what a client would get. Also
scored: out-of-distribution probes (noise, blank, saturated, a photograph, an impossible fail
density) that must come back ``unknown`` and flagged. Prints a table; writes
``docs/results/cross_recipe.{json,md,png}`` (``--results-dir``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from typing import Dict, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pipeline.startup  # noqa: E402,F401  (the shared start-up, before TensorFlow is imported)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from spanet.serving.contract import DEFAULT_SIGNATURE  # noqa: E402


def newest_version(model_dir: str) -> str:
    """A SavedModel folder: ``model_dir`` itself, or its newest numeric version (TF Serving layout)."""
    if os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = sorted((int(v) for v in os.listdir(model_dir) if v.isdigit()), reverse=True)
    if not versions:
        raise SystemExit(f"bench_cross_recipe: no SavedModel under {model_dir!r} (run `make run` or pass --train)")
    return os.path.join(model_dir, str(versions[0]))


def test_split_pngs(output_root: str) -> tuple:
    """(PNG bytes, labels) of the newest pipeline run's test split."""
    import tensorflow as tf

    folders = sorted(
        glob.glob(os.path.join(output_root, "pipeline", "WaferExampleGen", "examples", "*", "Split-test")),
        key=lambda p: int(p.split(os.sep)[-2]),
    )
    if not folders:
        raise SystemExit(f"bench_cross_recipe: no test split under {output_root!r}/pipeline (run the pipeline first)")
    images, labels = [], []
    for record in tf.data.TFRecordDataset(
        sorted(glob.glob(os.path.join(folders[-1], "*.gz"))), compression_type="GZIP"
    ):
        example = tf.train.Example.FromString(record.numpy())
        images.append(example.features.feature["image"].bytes_list.value[0])
        labels.append(example.features.feature["label"].bytes_list.value[0].decode())
    return images, labels


def predict(model, pngs: Sequence[bytes], batch: int = 256) -> Dict[str, np.ndarray]:
    """The served signature's class names and defect flags (and unknown marks where the model has them)."""
    import tensorflow as tf

    serve = model.signatures[DEFAULT_SIGNATURE]
    names, flags, unknown, normal = [], [], [], []
    for start in range(0, len(pngs), batch):
        out = serve(images=tf.constant(list(pngs[start : start + batch])))
        names += [n.decode() for n in out["class_name"].numpy()]
        flags += list(out["defective"].numpy().astype(bool))
        unknown += list(out["unknown"].numpy().astype(bool)) if "unknown" in out else [False] * len(out["defective"])
        normal += list(out["normal_probability"].numpy())
    unknown = np.array(unknown)
    return {
        "class_name": np.array(names),
        "defective": np.array(flags),
        "unknown": unknown,
        # What the defect flag thresholds: an unknown wafer is flagged whatever its P(normal).
        "normal_score": np.where(unknown, 0.0, np.array(normal, np.float64)),
    }


#: False-alarm rates at which models are compared threshold-free (:func:`missed_at_false_alarms`).
MATCHED_FALSE_ALARMS = (0.03, 0.05, 0.10)


def missed_at_false_alarms(normal_score: np.ndarray, defective: np.ndarray) -> Dict[str, int]:
    """Defective wafers missed when the threshold is set on the set's own normal wafers to flag 3, 5 or
    10 % of them: compares two models at equal false alarms, whatever thresholds they shipped with
    (an oracle threshold, so not what the shipped model would do)."""
    if not defective.any() or defective.all():
        return {}
    normal = np.sort(normal_score[~defective])
    missed = {}
    for rate in MATCHED_FALSE_ALARMS:
        threshold = normal[int(np.floor(rate * normal.size))]  # flags P(normal) < threshold: <= rate of normals
        missed[f"{rate:.2f}"] = int(np.sum(normal_score[defective] >= threshold))
    return missed


def score(labels: Sequence[str], predicted: Dict[str, np.ndarray], class_names: Sequence[str], normal: str) -> Dict:
    """Per-class recall / precision / F1, macro-F1, defect recall (with its 95 % lower bound), false alarms."""
    from components.clopper_pearson import lower_bound
    from components.config import UNKNOWN_CLASS as UNKNOWN
    from components.eval_summary import class_metrics_from_confusion

    columns = list(class_names) + [UNKNOWN]
    index = {c: i for i, c in enumerate(columns)}
    matrix = np.zeros((len(columns), len(columns)), np.int64)
    for truth, guess in zip(labels, predicted["class_name"]):
        matrix[index[truth], index.get(guess, index[UNKNOWN])] += 1
    metrics = class_metrics_from_confusion(matrix, columns)
    per_class = {c: metrics["per_class"][c] for c in class_names}
    f1 = [m["f1"] for m in per_class.values() if m["support"] > 0]
    labels = np.asarray(labels)
    defective = labels != normal
    flagged = predicted["defective"]
    n, k = int(defective.sum()), int(flagged[defective].sum())
    missed_by_class = {
        name: {"defective": int(np.sum(labels == name)), "missed": int(np.sum((labels == name) & ~flagged))}
        for name in class_names
        if name != normal and np.any(labels == name)
    }
    return {
        "wafers": int(len(labels)),
        "defective": n,
        "defect_recall": k / n if n else None,
        "defect_recall_lower_95": lower_bound(k, n, 0.95) if n else None,
        "missed_defects": n - k,
        "false_alarm_rate": float(flagged[~defective].mean()) if (~defective).any() else None,
        "unknown_rate": float(predicted["unknown"].mean()),
        "unknown_rate_normal": float(predicted["unknown"][~defective].mean()) if (~defective).any() else None,
        "accuracy": float(np.mean(labels == predicted["class_name"])),
        "macro_f1": float(np.mean(f1)) if f1 else None,
        "per_class": per_class,
        "missed_by_class": missed_by_class,
        "missed_at_false_alarms": missed_at_false_alarms(predicted["normal_score"], defective),
        "confusion": {"classes": columns, "matrix": matrix.tolist()},
    }


#: The scored sets, in table order: results key and column title.
SETS = (
    ("test_split", "in-distribution test split"),
    ("fresh", "fresh maps, same recipe"),
    ("stress", "stress set (other recipe)"),
)


def markdown(results: Dict) -> str:
    sets = [(results[key], title) for key, title in SETS if key in results]
    rows = ["| | " + " | ".join(title for _, title in sets) + " |", "|---" * (len(sets) + 1) + "|"]

    def fmt(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    for key, label in (
        ("wafers", "wafers"),
        ("defective", "defective wafers"),
        ("defect_recall", "defect recall"),
        ("defect_recall_lower_95", "defect recall, one-sided 95 % lower bound"),
        ("missed_defects", "missed defects"),
        ("false_alarm_rate", "false-alarm rate"),
        ("unknown_rate_normal", "normal wafers marked unknown"),
        ("accuracy", "accuracy"),
        ("macro_f1", "macro-F1"),
    ):
        values = [scored.get(key) for scored, _ in sets]
        rows.append(f"| {label} | " + " | ".join(str(v) if isinstance(v, int) else fmt(v) for v in values) + " |")
    for rate in MATCHED_FALSE_ALARMS:
        values = [scored.get("missed_at_false_alarms", {}).get(f"{rate:.2f}", "–") for scored, _ in sets]
        rows.append(
            f"| missed at {rate:.0%} false alarms (threshold set on the set) | " + " | ".join(map(str, values)) + " |"
        )
    rows += ["", "| class: recall (support); defective missed | " + " | ".join(t for _, t in sets) + " |"]
    rows.append("|---" * (len(sets) + 1) + "|")
    for name in results["stress"]["per_class"]:
        cells = []
        for scored, _ in sets:
            metrics, missed = scored["per_class"].get(name, {}), scored.get("missed_by_class", {}).get(name)
            cell = f"{fmt(metrics.get('recall'))} ({metrics.get('support', 0)})"
            cells.append(cell + (f"; {missed['missed']}" if missed else ""))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows += ["", "| probe | answered unknown | flagged defective |", "|---|---|---|"]
    for name, probe in results["probes"].items():
        rows.append(f"| {name} | {probe['unknown']}/{probe['count']} | {probe['flagged']}/{probe['count']} |")
    return "\n".join(rows) + "\n"


def plot(results: Dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["stress"]["per_class"])
    sets = [(results[key], title) for key, title in SETS if key in results]
    x = np.arange(len(names))
    width = 0.8 / len(sets)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (scored, title) in enumerate(sets):
        recall = [scored["per_class"].get(n, {}).get("recall", 0.0) for n in names]
        ax.bar(x - 0.4 + width * (i + 0.5), recall, width, label=title)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(
        "defect recall "
        + " / ".join(f"{scored['defect_recall']:.3f}" for scored, _ in sets)
        + ", macro-F1 "
        + " / ".join(f"{scored['macro_f1']:.3f}" for scored, _ in sets)
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output-root", default="spanet_output", help="the pipeline run's output root (default: %(default)s)"
    )
    parser.add_argument("--model-dir", help="SavedModel or TF Serving base dir (default: OUTPUT_ROOT/serving/spanet)")
    parser.add_argument("--train", action="store_true", help="run the default pipeline into OUTPUT_ROOT first")
    parser.add_argument(
        "--count", type=int, default=2700, help="stress maps, classes equally often (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=2026, help="stress-set seed (default: %(default)s)")
    parser.add_argument(
        "--fresh-count",
        type=int,
        default=5400,
        help="fresh maps of the training recipe, classes equally often (0: none; default: %(default)s)",
    )
    parser.add_argument("--fresh-seed", type=int, default=77, help="fresh-set seed (default: %(default)s)")
    parser.add_argument(
        "--results-dir", default="docs/results", help="where the JSON / Markdown / PNG go (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.count < 9:
        parser.error(f"--count must be at least 9 (one map per class), got {args.count}")
    if args.fresh_count < 0:
        parser.error(f"--fresh-count must be 0 or more, got {args.fresh_count}")
    if args.train:
        from pipeline.config import PipelineConfig
        from pipeline.run_local import run

        code = run(PipelineConfig(output_root=args.output_root))
        if code:
            return code
    import tensorflow as tf

    from spanet.data.classes import NORMAL_CLASS, WAFER_CLASSES
    from spanet.data.imageio import encode_png
    from spanet.data.probes import unknown_probes
    from spanet.data.stress import generate_stress_maps

    version = newest_version(args.model_dir or os.path.join(args.output_root, "serving", "spanet"))
    model = tf.saved_model.load(version)
    class_names = (
        [c.decode() for c in model.class_names.numpy()] if hasattr(model, "class_names") else list(WAFER_CLASSES)
    )
    started = time.time()
    test_pngs, test_labels = test_split_pngs(args.output_root)
    stress = generate_stress_maps(args.count, args.seed)
    stress = [r for r in stress if r.label in class_names]
    results = {
        "model": version,
        "test_split": score(test_labels, predict(model, test_pngs), class_names, NORMAL_CLASS),
        "stress": score(
            [r.label for r in stress], predict(model, [encode_png(r.image) for r in stress]), class_names, NORMAL_CLASS
        ),
        "probes": {},
        "stress_seed": args.seed,
    }
    if args.fresh_count:
        import dataclasses

        from pipeline.config import DefaultDataConfig
        from spanet.data.generator import generate_wafer_maps

        # The default data's own generator configuration, with classes equally often.
        recipe = dataclasses.replace(DefaultDataConfig().generator_config(), class_mix=None)
        fresh = [r for r in generate_wafer_maps(args.fresh_count, args.fresh_seed, recipe) if r.label in class_names]
        results["fresh"] = score(
            [r.label for r in fresh], predict(model, [encode_png(r.image) for r in fresh]), class_names, NORMAL_CLASS
        )
        results["fresh_seed"] = args.fresh_seed
    for name, pngs in unknown_probes().items():
        out = predict(model, pngs)
        results["probes"][name] = {
            "count": len(pngs),
            "unknown": int(out["unknown"].sum()),
            "flagged": int(out["defective"].sum()),
            "answers": [str(n) for n in out["class_name"]],
        }
    results["seconds"] = round(time.time() - started, 1)
    table = markdown(results)
    print(f"model {version}\n")
    print(table)
    os.makedirs(args.results_dir, exist_ok=True)
    with open(os.path.join(args.results_dir, "cross_recipe.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2, allow_nan=False)
    with open(os.path.join(args.results_dir, "cross_recipe.md"), "w", encoding="utf-8") as handle:
        handle.write(
            f"# Cross-recipe benchmark\n\nModel: `{os.path.relpath(version)}`; stress set: {len(stress)} maps "
            f"(`spanet.data.stress`, seed {args.seed}); fresh set: {args.fresh_count} maps of the training "
            f"recipe (seed {args.fresh_seed}).\n\n{table}"
        )
    plot(results, os.path.join(args.results_dir, "cross_recipe.png"))
    print(f"wrote {args.results_dir}/cross_recipe.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
