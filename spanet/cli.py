"""The ``spanet`` command line: one small function per subcommand, heavy imports inside them.

Add a subcommand by writing ``_add_<name>(subparsers)`` that registers its arguments and sets
``func`` to a ``_run_<name>(args) -> int``, and listing it in ``_SUBCOMMANDS``.
"""

import argparse
import sys
from typing import Callable, Dict, List, Optional, Sequence

from spanet.serving.contract import DEFAULT_MODEL_NAME, DEFAULT_SIGNATURE

#: Grid size of ``--format npz`` data sets when none is given (MixedWM38's 52 x 52).
NPZ_DEFAULT_GRID = 52
NPZ_FILE_NAME = "Wafer_Map_Datasets.npz"


class UsageError(ValueError):
    """A bad argument value found after parsing: reported on one line naming the option, exit status 2."""


def _rate(text: str, option: str) -> float:
    """A sampling rate in (0, 1]; UsageError naming `option` otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise UsageError(f"{option} must be a number in (0, 1], got {text!r}")
    return value


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
    from spanet.data.generator import MAX_GRID_SIDE, GeneratorConfig

    p = subparsers.add_parser(
        "generate", help="write a synthetic wafer-map data set", description=_run_generate.__doc__
    )
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--count", type=int, required=True, help="number of wafer maps")
    p.add_argument(
        "--format",
        dest="data_format",
        default="png",
        choices=("png", "npz", "g85", "g85-xml"),
        help="png: class folders + manifest.csv; npz: MixedWM38-style; g85: SEMI G85 ASCII; g85-xml: G85 XML",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument(
        "--min-size",
        type=int,
        default=None,
        help=f"smallest side of a die grid (default {GeneratorConfig.min_size}; npz: {NPZ_DEFAULT_GRID})",
    )
    p.add_argument(
        "--max-size",
        type=int,
        default=None,
        help=(
            f"largest side of a die grid (default {GeneratorConfig.max_size}, "
            f"at most {MAX_GRID_SIDE}; npz: {NPZ_DEFAULT_GRID})"
        ),
    )
    p.add_argument("--mixed-fraction", type=float, default=0.0, help="share of mixed-type maps, 0-1")
    p.add_argument("--lot-size", type=int, default=25, help="wafers per lot")
    p.add_argument(
        "--class-mix", type=_class_mix, default=None, help="class weights, e.g. 'none=8,Center=1' (default: equal)"
    )
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
    config = GeneratorConfig(
        mixed_fraction=args.mixed_fraction, lot_size=args.lot_size, class_mix=args.class_mix, **sizes
    )
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


def _add_serve(subparsers: "argparse._SubParsersAction") -> None:
    import inspect

    from spanet.serving.config import DEFAULT_GRPC_PORT, DEFAULT_MAX_MESSAGE_BYTES, ServerConfig

    p = subparsers.add_parser(
        "serve",
        help="a local TF Serving stand-in (development/tests only)",
        description=inspect.cleandoc(_run_serve.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model-base-path", required=True, help="TF Serving base directory: <dir>/<integer version>/saved_model.pb"
    )
    p.add_argument("--model-name", default=ServerConfig.model_name, help="name clients ask for (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port (default: %(default)s)")
    p.add_argument(
        "--rest-port", type=int, default=None, help="also serve TF Serving's REST routes on this port (e.g. 8501)"
    )
    p.add_argument("--host", default=ServerConfig.host, help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=ServerConfig.poll_interval_s,
        help="seconds between scans of the base directory for new versions (default: %(default)s)",
    )
    p.add_argument(
        "--max-message-mb",
        type=float,
        default=DEFAULT_MAX_MESSAGE_BYTES / 2**20,
        help="largest request / response in MiB; bigger requests get RESOURCE_EXHAUSTED (default: %(default)s)",
    )
    p.add_argument(
        "--max-workers", type=int, default=ServerConfig.max_workers, help="concurrent requests (default: %(default)s)"
    )
    p.add_argument(
        "--no-warmup", action="store_true", help="switch to a new version without running a warm-up request first"
    )
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve gRPC over TLS (with --tls-key)")
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.add_argument(
        "--tls-client-ca", default=None, help="PEM root certificates: require client certificates signed by them"
    )
    p.add_argument(
        "--request-log",
        default=None,
        metavar="DIR",
        help="log sampled Predict calls (gRPC and REST) as TF Serving PredictionLog TFRecords in DIR",
    )
    p.add_argument(
        "--request-log-sampling",
        default=None,
        metavar="RATE",
        help="share of calls logged, 0 < RATE <= 1 (TF Serving's sampling_rate; default 1 with --request-log)",
    )
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    """Serve a Pusher base directory over TF Serving's gRPC API (and optionally its REST routes).

    A development and test stand-in for TF Serving, not a production server: it speaks TF Serving's
    protocol (PredictionService Predict / Classify / GetModelMetadata, ModelService GetModelStatus,
    REST /v1/models/<name>[:predict]) so that the same client works against both. It serves the
    newest integer version of the base directory, loads and warms new versions before switching to
    them, and stops gracefully on SIGTERM / SIGINT. Production uses TF Serving itself (the
    tensorflow/serving image, gRPC 8500 / REST 8501, MODEL_BASE_PATH / MODEL_NAME).

    With --request-log DIR, a --request-log-sampling share of successful Predict calls (gRPC and
    REST) is written to DIR as tensorflow.serving.PredictionLog TFRecords, as TF Serving's
    logging_config does; files get their final .tfrecord name when rotated (60 s or 64 MiB) or at
    shutdown. `spanet drift` reads them.
    """
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from spanet.serving.config import ServerConfig, TLSConfig
    from spanet.serving.server import serve_forever

    if args.max_message_mb <= 0 or args.poll_seconds <= 0 or args.max_workers < 1:
        raise ValueError("--max-message-mb and --poll-seconds must be > 0, --max-workers >= 1")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    request_log = None
    if args.request_log_sampling is not None:
        rate = _rate(args.request_log_sampling, "--request-log-sampling")
        if not args.request_log:
            raise UsageError("--request-log-sampling needs --request-log DIR")
    if args.request_log:
        from spanet.serving.config import RequestLogConfig

        sampling = 1.0 if args.request_log_sampling is None else rate
        request_log = RequestLogConfig(directory=args.request_log, sampling_rate=sampling)
    tls = (
        TLSConfig(root_certs=args.tls_client_ca, cert_chain=args.tls_cert, private_key=args.tls_key)
        if args.tls_cert
        else None
    )
    config = ServerConfig(
        model_base_path=args.model_base_path,
        model_name=args.model_name,
        host=args.host,
        port=args.port,
        rest_port=args.rest_port,
        poll_interval_s=args.poll_seconds,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_workers=args.max_workers,
        warmup=not args.no_warmup,
        tls=tls,
        request_log=request_log,
    )
    return serve_forever(config)


def _add_predict(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "predict", help="classify images / wafer-map files with a served model", description=_run_predict.__doc__
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="PATH",
        help="PNG/JPEG images, .npz (MixedWM38), .g85/.xml/.map (G85), "
        ".pkl (WM-811K); folders (searched recursively) and quoted glob patterns ('lot*/**/*.png') too",
    )
    p.add_argument(
        "--output",
        default="table",
        choices=("table", "csv", "jsonl"),
        help="table for people, csv or jsonl (one JSON object per input) for programs (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error for large inputs")
    p.add_argument(
        "--server", default="localhost:8500", help="TF Serving gRPC address host:port (default: %(default)s)"
    )
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="served model name (default: %(default)s)")
    p.add_argument("--model-version", type=int, default=None, help="pin a version (default: the newest served)")
    p.add_argument("--signature", default=DEFAULT_SIGNATURE, help="signature to call (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="images per request (default: %(default)s)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="deadline of each request in seconds (default: %(default)s)"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for the server and model to be ready (default: %(default)s)",
    )
    p.add_argument("--tls-root-certs", default=None, help="PEM root certificates: connect over TLS")
    p.add_argument("--tls-cert", default=None, help="PEM client certificate chain (mutual TLS)")
    p.add_argument("--tls-key", default=None, help="PEM client private key (mutual TLS)")
    p.add_argument("--tls-server-name", default=None, help="host name to check the server certificate against")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    """Send images and wafer maps to TF Serving (or `spanet serve`) and print one row per input.

    Columns: file (file#index for files holding many maps), class, confidence (the probability of
    that class) and defective (with the defect score); csv and jsonl add the score, the model version
    and every class's probability. An unreadable file is listed on standard error with its reason and
    the rest are predicted; the exit status is then 1. Exits 1 with a one-line message when nothing
    is readable or the server cannot be reached within --wait seconds.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.batch_size < 1 or args.timeout <= 0 or args.wait < 0:
        raise ValueError("--batch-size must be >= 1, --timeout > 0 and --wait >= 0")
    from spanet.data.progress import progress_bar
    from spanet.serving.predict import FORMATTERS, read_many

    inputs, problems = read_many(args.files)  # files are read before any network
    for problem in problems:
        print(f"spanet predict: skipped {problem}", file=sys.stderr)
    if not inputs:
        raise ValueError(f"nothing readable among {len(args.files)} path(s)" + ("; see above" if problems else ""))
    from spanet.serving.client import ServingClient, ServingRequestError
    from spanet.serving.config import ClientConfig, TLSConfig

    tls = None
    if args.tls_root_certs or args.tls_cert:
        tls = TLSConfig(
            root_certs=args.tls_root_certs,
            cert_chain=args.tls_cert,
            private_key=args.tls_key,
            server_name_override=args.tls_server_name,
        )
    config = ClientConfig(
        target=args.server,
        model_name=args.model_name,
        model_version=args.model_version,
        signature_name=args.signature,
        timeout_s=args.timeout,
        batch_size=args.batch_size,
        tls=tls,
    )
    with ServingClient(config) as client:
        client.wait_until_ready(timeout_s=args.wait)
        show = not args.no_progress and len(inputs) > PROGRESS_FROM
        with progress_bar(len(inputs), "predict", unit="input", enabled=show) as bar:
            try:
                predictions = client.predict_images([item.image for item in inputs], on_batch=bar.update)
            except ServingRequestError as exc:
                raise ValueError(f"the server refused the request: {' '.join(str(exc).split())}") from None
    print(FORMATTERS[args.output]([(item.ref, p) for item, p in zip(inputs, predictions)]))
    if problems:
        print(f"spanet predict: {len(problems)} path(s) skipped, {len(inputs)} input(s) predicted", file=sys.stderr)
        return 1
    return 0


#: ``spanet predict`` shows a progress bar from this many inputs on.
PROGRESS_FROM = 256


def _add_explain(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "explain", help="SmoothGrad maps: which dies drove the call", description=_run_explain.__doc__
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="PATH",
        help="the inputs spanet predict takes: images, wafer-map files, folders, globs",
    )
    p.add_argument(
        "--model-dir", required=True, help="a SavedModel folder, or a serving base folder (its newest version)"
    )
    p.add_argument("--out", default="explanations", help="folder for the PNG overlays (default: %(default)s)")
    p.add_argument(
        "--output",
        default="table",
        choices=("table", "csv", "jsonl"),
        help="the listing's format (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (default: %(default)s)")
    p.add_argument(
        "--pixels",
        type=int,
        default=256,
        help="longer side of each overlay PNG, enlarged die by die (default: %(default)s)",
    )
    p.set_defaults(func=_run_explain)


def _run_explain(args: argparse.Namespace) -> int:
    """Explain the exported model's call on each input: its Grad-CAM map (the predicted class; for a
    multi-label model the most probable pattern) resized to the wafer's own grid and drawn over it
    as a PNG in --out, one per input, listed with the class and confidence. Runs the SavedModel in
    this process (no server). Unreadable files are skipped and listed; the exit status is then 1.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    if args.batch_size < 1 or args.pixels < 8:
        raise ValueError("--batch-size must be >= 1 and --pixels >= 8")
    from spanet.serving.explain import explain_inputs
    from spanet.serving.local import LocalModel
    from spanet.serving.predict import EXPLAINED_FORMATTERS, read_many

    inputs, problems = read_many(args.files)
    for problem in problems:
        print(f"spanet explain: skipped {problem}", file=sys.stderr)
    if not inputs:
        raise ValueError(f"nothing readable among {len(args.files)} path(s)" + ("; see above" if problems else ""))
    model = LocalModel(args.model_dir)
    rows = explain_inputs(model, inputs, args.out, batch_size=args.batch_size, pixels=args.pixels)
    print(EXPLAINED_FORMATTERS[args.output](rows))
    print(f"spanet explain: {len(rows)} overlay(s) in {os.path.abspath(args.out)}", file=sys.stderr)
    return 1 if problems else 0


def _add_drift(subparsers: "argparse._SubParsersAction") -> None:
    import inspect

    from spanet.monitoring.drift import DriftConfig

    p = subparsers.add_parser(
        "drift",
        help="compare logged production traffic with training data (TFDV drift)",
        description=inspect.cleandoc(_run_drift.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--logs", default=None, metavar="DIR", help="request log folder (spanet serve --request-log)")
    p.add_argument("--baseline", default=None, metavar="FILE", help="statistics written by `spanet drift baseline`")
    p.add_argument("--out", default=None, metavar="DIR", help="write anomalies.pbtxt, drift.json and the statistics")
    p.add_argument(
        "--jsd-threshold",
        default=None,
        help=f"Jensen-Shannon threshold of the fail fraction (default {DriftConfig.numeric_jsd})",
    )
    p.add_argument(
        "--geometry-jsd-threshold",
        default=None,
        help=f"Jensen-Shannon threshold of die count, rows, columns, aspect (default {DriftConfig.geometry_jsd})",
    )
    p.add_argument(
        "--linf-threshold",
        default=None,
        help=f"L-infinity threshold of predicted class and unknown (default {DriftConfig.categorical_linf})",
    )
    p.add_argument(
        "--min-wafers", default=None, help=f"fewest logged wafers compared (default {DriftConfig.min_wafers})"
    )
    p.set_defaults(func=_run_drift)
    sub = p.add_subparsers(dest="drift_command", metavar="baseline")
    b = sub.add_parser(
        "baseline", help="statistics of the drift features of training data", description=_run_drift_baseline.__doc__
    )
    b.add_argument("--data", required=True, help="training data: any format the readers take (PNG folder, npz, G85)")
    b.add_argument("--out", required=True, dest="stats_out", metavar="FILE", help="statistics file to write")
    b.add_argument("--format", dest="data_format", default="auto", help="data format (default: detected)")
    b.add_argument(
        "--model-dir",
        default=None,
        help="served SavedModel (or base folder): its predicted classes; without it the labels stand in",
    )
    b.add_argument("--batch-size", type=int, default=64, help="images per model call (default: %(default)s)")
    b.set_defaults(func=_run_drift_baseline)


def _drift_config(args: argparse.Namespace):
    """The DriftConfig of the threshold options (defaults where not given); UsageError names a bad one."""
    from spanet.monitoring.drift import DriftConfig

    values = {}
    for option, name in (
        ("--jsd-threshold", "numeric_jsd"),
        ("--geometry-jsd-threshold", "geometry_jsd"),
        ("--linf-threshold", "categorical_linf"),
    ):
        text = getattr(args, option[2:].replace("-", "_"))
        if text is not None:
            values[name] = _rate(text, option)
    if args.min_wafers is not None:
        if not args.min_wafers.isdigit() or int(args.min_wafers) < 1:
            raise UsageError(f"--min-wafers must be an integer >= 1, got {args.min_wafers!r}")
        values["min_wafers"] = int(args.min_wafers)
    return DriftConfig(**values)


def _run_drift(args: argparse.Namespace) -> int:
    """Compare the per-wafer features of logged traffic with a training baseline using TFDV.

    Reads the PredictionLogs of --logs (spanet serve --request-log, or TF Serving's request logger),
    derives per-wafer features (fail-die fraction, on-wafer dies, rows, columns, aspect ratio,
    predicted class, unknown), computes their TFDV statistics and validates them against --baseline
    with TFDV's drift comparators (Jensen-Shannon divergence for numeric features, L-infinity for
    categorical ones). Prints one line per drifted feature (feature, comparator, value vs threshold).
    Exit status: 0 no drift, 1 drift (or nothing to compare), 2 bad arguments.
    Write the baseline with `spanet drift baseline --data TRAINING_DATA --out FILE`.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not args.logs:
        raise UsageError("--logs DIR is required (or use `spanet drift baseline`)")
    if not args.baseline:
        raise UsageError("--baseline FILE is required")
    if not os.path.exists(args.logs):
        raise UsageError(f"--logs {args.logs!r} does not exist")
    if not os.path.isfile(args.baseline):
        raise UsageError(f"--baseline {args.baseline!r} is not a file")
    config = _drift_config(args)
    from spanet.monitoring.drift import compare, feature_statistics, load_statistics, write_report, write_statistics
    from spanet.monitoring.features import log_rows
    from spanet.serving.request_log import log_files, read_prediction_logs

    try:
        baseline = load_statistics(args.baseline)
    except ValueError as exc:
        raise UsageError(f"--baseline: {exc}") from None
    files = log_files(args.logs)
    rows = list(log_rows(read_prediction_logs(args.logs)))
    if len(rows) < config.min_wafers:
        raise ValueError(
            f"{len(rows)} logged wafer(s) in {len(files)} file(s) under {args.logs}: "
            f"fewer than {config.min_wafers} (--min-wafers) to compare"
        )
    traffic = feature_statistics(rows)
    report = compare(traffic, baseline, config)
    for m in report.drifted:
        print(m.line())
    for line in report.other_anomalies:
        print(line)
    if args.out:
        write_report(report, args.out)
        write_statistics(traffic, os.path.join(args.out, "traffic_stats.pb"))
    verdict = "drift" if report.has_drift else "no drift"
    worst = max(report.measurements, key=lambda m: m.value / m.threshold, default=None)
    closest = f"; closest: {worst.line()[len('ok ') :]}" if worst and not report.has_drift else ""
    print(
        f"spanet drift: {verdict}: {report.traffic_wafers} logged wafer(s) from {len(files)} file(s) vs "
        f"{report.baseline_wafers} baseline wafer(s){closest}",
        file=sys.stderr,
    )
    return 1 if report.has_drift else 0


def _run_drift_baseline(args: argparse.Namespace) -> int:
    """Write the TFDV statistics of the drift features of training data (the baseline `spanet drift` takes)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not os.path.exists(args.data):
        raise UsageError(f"--data {args.data!r} does not exist")
    from spanet.data.records import WaferRecord
    from spanet.data.readers import read_records
    from spanet.monitoring.drift import feature_statistics, write_statistics
    from spanet.monitoring.features import record_rows

    records, rejected = [], 0
    for result in read_records(args.data, args.data_format):
        if isinstance(result, WaferRecord):
            records.append(result)
        else:
            rejected += 1
    if not records:
        raise ValueError(f"no readable wafer map under {args.data} ({rejected} rejected)")
    images = [r.image for r in records]
    if args.model_dir:
        from spanet.data.imageio import encode_png
        from spanet.serving.local import LocalModel

        model = LocalModel(args.model_dir)
        predictions = []
        for start in range(0, len(images), args.batch_size):
            predictions += model.predict([encode_png(im) for im in images[start : start + args.batch_size]])
        names = [p.class_name for p in predictions]
        unknown = [p.unknown for p in predictions]
    else:
        names, unknown = [r.label for r in records], [False] * len(records)
    path = write_statistics(feature_statistics(record_rows(images, names, unknown)), args.stats_out)
    source = "model predictions" if args.model_dir else "labels as the class"
    print(f"wrote drift baseline of {len(records)} wafer map(s) ({source}; {rejected} rejected) to {path}")
    return 0


#: The registered subcommands, in help order.
_SUBCOMMANDS: List[Callable[["argparse._SubParsersAction"], None]] = [
    _add_generate,
    _add_serve,
    _add_predict,
    _add_explain,
    _add_drift,
]


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
    except UsageError as exc:
        print(f"spanet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"spanet {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
