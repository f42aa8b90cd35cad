"""The ablation (the paper's table): normalisation, head, optimiser, schedule and attention, one at a time.

    python experiments/ablation.py --quick --out docs/results

The baseline is the paper's choice (LayerNorm in attention, Conv1x1 head, NAG, cosine annealing,
attention in every block); each other row changes exactly one of them.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import spanet  # noqa: E402,F401  (its start-up: Keras 2 before TensorFlow is imported)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from dataclasses import replace  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

from experiments import cli, harness, plots  # noqa: E402
from spanet.recipe import DEFAULT_R, model_options  # noqa: E402

NAME = "ablation"
BASELINE_LABEL = "baseline: LayerNorm, Conv1x1, NAG, cosine, attention"
#: (factor, setting, what changes from the baseline): the paper's alternatives to its choices.
VARIANTS = (
    ("normalisation", "BatchNorm", {"options": {"norm": "batch"}}),
    ("normalisation", "GroupNorm", {"options": {"norm": "group"}}),
    ("head", "global average pooling", {"options": {"head": "gap"}}),
    ("optimiser", "SGD", {"optimizer": "sgd"}),
    ("optimiser", "Adam", {"optimizer": "adam"}),
    ("schedule", "reduce on plateau", {"schedule": "plateau"}),
    ("attention", "none (SP-Net)", {"options": {"attention": False}}),
)
#: Accuracy the paper reports for some rows (its AEI / ADI / API images).
PAPER = {BASELINE_LABEL: "98.27% (cosine) / 98.15% (LayerNorm)", "attention: none (SP-Net)": "97.4-97.7%"}


def specs(width: float) -> List[harness.ModelSpec]:
    """The baseline, then one configuration per alternative."""
    base = harness.ModelSpec(
        label=BASELINE_LABEL,
        width=width,
        group="baseline",
        options=tuple(model_options("spanet").items()),  # the recipe's defaults: the paper's choices
    )
    out = [base]
    for factor, setting, change in VARIANTS:
        options = {**dict(base.options), **change.get("options", {})}
        out.append(
            replace(
                base,
                label=f"{factor}: {setting}",
                group=factor,
                options=tuple(options.items()),
                optimizer=change.get("optimizer", base.optimizer),
                schedule=change.get("schedule", base.schedule),
            )
        )
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = cli.parser(__doc__.splitlines()[0]).parse_args(argv)
    run = cli.invocation(args, __file__, argv)
    data = run.load_data(NAME)
    results = harness.run_all(specs(run.preset.width), data, run.preset.train, run.limit)
    baseline = results[0].accuracy
    rows = [
        [
            x.spec.group,
            x.spec.label.split(": ", 1)[-1] if x.spec.group != "baseline" else "paper's choice",
            x.accuracy,
            x.precision,
            x.recall,
            x.f1,
            x.defect_recall,
            x.accuracy - baseline,
            x.parameters,
            PAPER.get(x.spec.label, ""),
        ]
        for x in results
    ]
    header = [
        "factor",
        "setting",
        "accuracy",
        "precision",
        "recall",
        "F1",
        "defect recall",
        "accuracy - baseline",
        "params",
        "paper: accuracy",
    ]
    plot = plots.plot_ablation(
        results, run.output_path(NAME, "png"), title=f"SP&A-Net ablation, width {run.preset.width:g}, r {DEFAULT_R:g}"
    )
    run.publish(
        NAME,
        "Ablation (SP&A-Net)",
        data,
        f"; SP&A-Net width {run.preset.width:g}, r {DEFAULT_R:g}",
        header,
        rows,
        plot,
        notes=[
            (
                "Each row changes one setting of the baseline (the paper's choices); "
                "everything else, the data and the seed are the same."
            ),
            (
                "Normalisation is the one inside the attention block; the head is Conv1x1 flattening "
                "(1x1 conv -> pool -> 1x1 conv to 1280) vs global average pooling only."
            ),
            (
                "Reduce-on-plateau watches the training loss (there is no validation split here) with patience 3, "
                "so in a short run it may never lower the rate."
            ),
            (
                "The paper's accuracies are on its proprietary AEI / ADI / API images; "
                "its ResNet-50 + SE / NL / SNL / GC rows are in the model comparison instead."
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
