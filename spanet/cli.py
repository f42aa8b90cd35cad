"""The ``spanet`` command line: one small function per subcommand, heavy imports inside them.

Add a subcommand by writing ``_add_<name>(subparsers)`` that registers its arguments and sets
``func`` to a ``_run_<name>(args) -> int``, and listing it in ``_SUBCOMMANDS``.
"""

import argparse
import sys
from typing import Callable, Dict, List, Optional, Sequence

#: Grid size of ``--format npz`` data sets when none is given (MixedWM38's 52 x 52).
NPZ_DEFAULT_GRID = 52
NPZ_FILE_NAME = "Wafer_Map_Datasets.npz"


def _class_mix(text: str) -> Dict[str, float]:
    """Parse ``Center=1,none=8.5`` into a class-weight mapping."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"class mix entry {part!r} must look like NAME=WEIGHT")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight of {name!r} must be a number, got {value!r}") from None
    return mix


def _add_generate(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser("generate", help="write a synthetic wafer-map data set", description=_run_generate.__doc__)
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--count", type=int, required=True, help="number of wafer maps")
    p.add_argument("--format", dest="data_format", default="png", choices=("png", "npz", "g85", "g85-xml"),
                   help="png: class folders + manifest.csv; npz: MixedWM38-style; g85: SEMI G85 ASCII; g85-xml: G85 XML")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--min-size", type=int, default=None, help="smallest die grid (default 26; npz: 52)")
    p.add_argument("--max-size", type=int, default=None, help="largest die grid (default 64; npz: 52)")
    p.add_argument("--mixed-fraction", type=float, default=0.0, help="share of mixed-type maps, 0-1")
    p.add_argument("--lot-size", type=int, default=25, help="wafers per lot")
    p.add_argument("--class-mix", type=_class_mix, default=None, help="class weights, e.g. 'none=8,Center=1' (default: equal)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    """Generate synthetic WM-811K-style wafer maps and write them in a format users have."""
    import os

    from spanet.data.generator import GeneratorConfig, iter_wafer_maps
    from spanet.data.writers import write_dataset

    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    default = NPZ_DEFAULT_GRID if args.data_format == "npz" else None
    sizes = {}
    if args.min_size or default:
        sizes["min_size"] = args.min_size or default
    if args.max_size or default:
        sizes["max_size"] = args.max_size or default
    config = GeneratorConfig(mixed_fraction=args.mixed_fraction, lot_size=args.lot_size, class_mix=args.class_mix, **sizes)
    if args.data_format == "npz" and config.min_size != config.max_size:
        raise ValueError("--format npz stores one grid size: give --min-size equal to --max-size")
    records = iter_wafer_maps(args.count, args.seed, config)
    out = args.out
    if args.data_format == "npz":
        if os.path.exists(out) and os.listdir(out):
            raise FileExistsError(f"output {out!r} already exists and is not an empty folder")
        out = os.path.join(out, NPZ_FILE_NAME)
    written = write_dataset(records, out, args.data_format, total=args.count, show_progress=not args.no_progress)
    print(f"wrote {written} wafer maps ({args.data_format}) to {out}")
    return 0


#: The registered subcommands, in help order.
_SUBCOMMANDS: List[Callable[["argparse._SubParsersAction"], None]] = [_add_generate]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``spanet`` command with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="spanet", description="SP&A-Net wafer defect pattern classification")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``spanet`` command; returns the exit status (2 for usage errors, 1 for failures)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"spanet {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
