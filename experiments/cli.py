"""The experiments' shared command line: mode, data set, output folder and the budget overrides.

python experiments/<name>.py [--quick|--full] [--data PATH --format FMT] --out DIR
                             [--count N --epochs N --limit N --image-size N --width W ...]
"""

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from experiments import markdown
from experiments.harness import PRESETS, Dataset, Preset, load_dataset, machine_description, with_overrides
from spanet.data.readers import FORMATS


@dataclass
class Invocation:
    """What one experiment run was asked to do."""

    preset: Preset
    mode: str
    out: str
    limit: Optional[int]
    command: str
    started: float = field(default_factory=time.time)

    def load_data(self, name: str) -> Dataset:
        """The run's data set, announced on stdout."""
        data = load_dataset(self.preset.data)
        print(
            f"{name}: {data.description}; train {len(data.y_train)} / test {len(data.y_test)} maps, "
            f"classes {data.class_names}"
        )
        return data

    def output_path(self, name: str, suffix: str) -> str:
        """``<out>/<name>.<suffix>``, with the output folder created."""
        os.makedirs(self.out, exist_ok=True)
        return os.path.join(self.out, f"{name}.{suffix}")

    def publish(
        self,
        name: str,
        title: str,
        data: Dataset,
        settings: str,
        header: Sequence[str],
        rows: Sequence[Sequence],
        plot: str,
        notes: Sequence[str],
    ) -> str:
        """Writes the experiment's Markdown page (``settings`` follows the recipe line) and says where it
        and the plot are."""
        page = markdown.write_page(
            self.output_path(name, "md"),
            title,
            self.command,
            machine_description(),
            data.split_description,
            settings_text(self.preset) + settings,
            markdown.markdown_table(header, rows),
            plot,
            notes=notes,
            seconds=time.time() - self.started,
        )
        print(f"{name}: wrote {page} and {plot} in {(time.time() - self.started) / 60:.1f} min")
        return page


def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every experiment takes."""
    p = argparse.ArgumentParser(description=description)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", dest="mode", action="store_const", const="quick", help="minutes on a 2-core CPU (default)"
    )
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="the paper-sized run, for a GPU")
    p.set_defaults(mode="quick")
    p.add_argument(
        "--data", help="a data set the readers accept (default: the synthetic benchmark, generated in-process)"
    )
    p.add_argument("--format", default="auto", choices=FORMATS, help="its format (default: %(default)s)")
    p.add_argument("--out", required=True, help="folder for the Markdown table and the PNG plot")
    p.add_argument("--count", type=int, help="maps to generate, or the most to sample from --data (0: all)")
    p.add_argument("--epochs", type=int, help="training epochs per configuration")
    p.add_argument("--batch-size", type=int, help="training batch size")
    p.add_argument("--image-size", type=int, help="model input height and width")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 for wafer maps / grey images, 3 for RGB")
    p.add_argument("--width", type=float, help="width multiplier of the networks (model comparison: see --widths)")
    p.add_argument("--widths", type=float, nargs=3, help="the model comparison's three widths")
    p.add_argument("--lot-size", type=int, help="wafers per lot of the synthetic set")
    p.add_argument("--seed", type=int, help="data and training seed")
    p.add_argument("--limit", type=int, help="train only the first N configurations (smoke tests)")
    p.add_argument(
        "--graph", action="store_true", help="compile training graphs (faster per step; slow to start on a CPU)"
    )
    return p


def invocation(args: argparse.Namespace, script: str, argv: Optional[Sequence[str]]) -> Invocation:
    """The preset with this command line's overrides."""
    preset = with_overrides(
        PRESETS[args.mode],
        width=args.width,
        widths=args.widths,
        count=args.count,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        channels=args.channels,
        lot_size=args.lot_size,
        seed=args.seed,
        data_path=args.data,
        data_format=args.format if args.data else None,
        run_eagerly=False if args.graph else None,
    )
    words: List[str] = list(sys.argv[1:] if argv is None else argv)
    command = (
        "python " + os.path.join("experiments", os.path.basename(script)) + (" " + shlex.join(words) if words else "")
    )
    return Invocation(preset=preset, mode=args.mode, out=args.out, limit=args.limit, command=command)


def settings_text(preset: Preset) -> str:
    """The training budget and recipe in one line, for the Markdown page."""
    t, d = preset.train, preset.data
    return (
        f"{d.image_size}x{d.image_size}x{d.channels} input, {t.epochs} epochs, batch {t.batch_size}, Circle Loss "
        f"(gamma {t.gamma:g}, m {t.margin:g}), NAG/SGD lr {t.learning_rate:g} (Adam {t.adam_learning_rate:g}) -> "
        f"{t.final_learning_rate:g}, {t.warmup_epochs} warm-up epoch(s), weight decay {t.weight_decay:g}, "
        "balanced class weights, flip/rotate augmentation, BatchNorm statistics re-estimated before testing; "
        f"test split: {d.test_fraction:.0%} of the lots, held out; scores are arg-max predictions, "
        "macro averages over the test split's classes"
    )
