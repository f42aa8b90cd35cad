"""The composition-ratio sweep (the paper's table): SP&A-Net at r in {0.06 ... 1.0}.

    python experiments/r_sweep.py --quick --out docs/results
    python experiments/r_sweep.py --full --data Wafer_Map_Datasets.npz --format npz --out results

By default the blocks' own depthwise convolutions keep depth multiplier 1 (``--depth-multiplier
fixed``), so only the composition ratio changes between rows; ``--depth-multiplier published``
trains the published code's rule (ceil(1/r) - 1, which grows the network to ~74M parameters at
r = 0.06 and width 1). The table shows the parameters of both either way.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import spanet  # noqa: E402,F401  (its start-up: Keras 2 before TensorFlow is imported)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from typing import List, Optional, Sequence  # noqa: E402

from experiments import cli, harness, plots  # noqa: E402

NAME = "r_sweep"
R_VALUES = (0.06, 0.13, 0.25, 0.5, 0.63, 0.83, 1.0)
#: The paper's Table (accuracy, precision, recall, F1, params in M) on its AEI / ADI / API images.
PAPER = {
    0.06: (0.9845, 0.9745, 0.9916, 0.9830, 5.10),
    0.13: (0.9844, 0.9743, 0.9915, 0.9828, 3.40),
    0.25: (0.9840, 0.9737, 0.9905, 0.9820, 2.98),
    0.5: (0.9838, 0.9732, 0.9903, 0.9817, 2.60),
    0.63: (0.9781, 0.9675, 0.9844, 0.9758, 2.47),
    0.83: (0.9721, 0.9638, 0.9748, 0.9693, 2.35),
    1.0: (0.9583, 0.9424, 0.9662, 0.9542, 2.29),
}


def specs(width: float, depth_multiplier: str = "fixed") -> List[harness.ModelSpec]:
    """One SP&A-Net per r (the paper's recipe otherwise)."""
    multiplier = 1 if depth_multiplier == "fixed" else None
    return [
        harness.ModelSpec(
            label=f"r={r:g}", width=width, group="r", options=(("r", r), ("block_depth_multiplier", multiplier))
        )
        for r in R_VALUES
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--depth-multiplier",
        choices=["fixed", "published"],
        default="fixed",
        help="the blocks' depthwise depth multiplier: 1 for every r, or the published ceil(1/r) - 1",
    )
    args = p.parse_args(argv)
    run = cli.invocation(args, __file__, argv)
    data = run.load_data(NAME)
    configurations = specs(run.preset.width, args.depth_multiplier)
    results = harness.run_all(configurations, data, run.preset.train, run.limit)
    other = "published" if args.depth_multiplier == "fixed" else "fixed"
    other_parameters = [
        harness.count_parameters(
            x.spec, len(data.class_names), data.input_shape, block_depth_multiplier=None if other == "published" else 1
        )
        for x in results
    ]
    rows = []
    for result, other_count in zip(results, other_parameters):
        r = result.spec.option("r")
        paper = PAPER.get(r)
        rows.append(
            [
                f"{r:g}",
                result.accuracy,
                result.precision,
                result.recall,
                result.f1,
                result.defect_recall,
                result.parameters,
                other_count,
                "n/a" if paper is None else f"{paper[0]:.2%} / {paper[4]:.2f}M",
            ]
        )
    header = [
        "r",
        "accuracy",
        "precision",
        "recall",
        "F1",
        "defect recall",
        f"params (trained: {args.depth_multiplier})",
        f"params ({other} rule)",
        "paper: accuracy / params",
    ]
    published = other_parameters if other == "published" else [x.parameters for x in results]
    multiplier_rule = (
        "1 for every r (only the composition ratio changes between rows)"
        if args.depth_multiplier == "fixed"
        else "of the published code, ceil(1/r) - 1"
    )
    plot = plots.plot_r_sweep(
        results,
        run.output_path(NAME, "png"),
        published,
        title=f"SP&A-Net, width {run.preset.width:g}: composition ratio r",
    )
    run.publish(
        NAME,
        "Composition-ratio sweep (SP&A-Net)",
        data,
        f"; SP&A-Net width {run.preset.width:g}, attention in every block, LayerNorm, Conv1x1 head",
        header,
        rows,
        plot,
        notes=[
            (
                "Trained with the blocks' depthwise depth multiplier "
                f"{multiplier_rule}; "
                f"the other parameter column counts the same network under the {other} rule, untrained."
            ),
            (
                "Precision, recall and F1 are macro averages over the classes; "
                "defect recall is the share of defective test wafers predicted as any defect class "
                "(arg-max, no operating threshold)."
            ),
            (
                "The paper's column is its own table on its proprietary AEI / ADI / API images at full width: "
                "a different data set, input size and budget."
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
