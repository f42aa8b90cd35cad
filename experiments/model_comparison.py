"""Accuracy against parameters (the paper's plot): SP&A-Net and the baselines at three widths.

    python experiments/model_comparison.py --quick --out docs/results

Networks: SP&A-Net, the GhostNet-style net (self-proliferation without attention), MobileNetV2,
MobileNetV3 and ResNet-50 with GC blocks, each with the cosine head and the same recipe.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import spanet  # noqa: E402,F401  (its start-up: Keras 2 before TensorFlow is imported)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from typing import List, Optional, Sequence  # noqa: E402

from experiments import cli, harness, plots  # noqa: E402

NAME = "model_comparison"
MODELS = (
    ("spanet", "SP&A-Net"),
    ("ghostnet", "GhostNet-style"),
    ("mobilenet_v2", "MobileNetV2"),
    ("mobilenet_v3", "MobileNetV3"),
    ("resnet50_gc", "ResNet-50 + GC"),
)
#: Read off the paper's plot (AEI images): SP&A-Net accuracy at 2.4M / 3.7M / 5.5M parameters.
PAPER_SPANET = "about 0.965 / 0.971 / 0.976 at 2.4M / 3.7M / 5.5M parameters (AEI)"


def specs(widths: Sequence[float]) -> List[harness.ModelSpec]:
    """Every network at every width, width by width (so a --limit still compares networks)."""
    return [
        harness.ModelSpec(label=f"{title}, width {w:g}", model=model, width=w, group=title)
        for w in widths
        for model, title in MODELS
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = cli.parser(__doc__.splitlines()[0]).parse_args(argv)
    run = cli.invocation(args, __file__, argv)
    data = run.load_data(NAME)
    results = harness.run_all(specs(run.preset.widths), data, run.preset.train, run.limit)
    results = sorted(results, key=lambda x: ([m for _, m in MODELS].index(x.spec.group), x.spec.width))
    rows = [
        [x.spec.group, f"{x.spec.width:g}", x.parameters, x.accuracy, x.precision, x.recall, x.f1, x.defect_recall]
        for x in results
    ]
    header = ["network", "width", "params", "accuracy", "precision", "recall", "F1", "defect recall"]
    plot = plots.plot_accuracy_vs_parameters(
        results,
        run.output_path(NAME, "png"),
        title=f"Accuracy against parameters ({run.preset.data.image_size}x{run.preset.data.image_size} maps)",
    )
    run.publish(
        NAME,
        "Accuracy against parameters",
        data,
        f"; widths {', '.join(f'{w:g}' for w in run.preset.widths)}",
        header,
        rows,
        plot,
        notes=[
            (
                "Every network ends in the same cosine classifier and is trained with the same recipe and budget; "
                "SP&A-Net uses r = 0.5."
            ),
            (
                "A width multiplier means different things per network (ResNet-50's bottlenecks are far wider), "
                "so compare along the parameter axis."
            ),
            (
                f"The paper's plot (its AEI images, full size): SP&A-Net {PAPER_SPANET}, "
                "above GhostNet, MobileNetV3 and MobileNetV2 at equal size; "
                "GCNet needs 10-14M parameters to come close."
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
