"""``spanet predict`` and ``spanet serve``: the table, clear one-line failures, a real serve process."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from spanet.cli import build_parser, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def input_files(tmp_path_factory, wafer_records, tiny_maps):
    """A PNG image and a MixedWM38 npz holding three 52x52 wafer maps."""
    from spanet.data.formats.mixedwm38 import write_mixedwm38
    from spanet.data.imageio import encode_png

    folder = tmp_path_factory.mktemp("predict_inputs")
    png = folder / "wafer.png"
    png.write_bytes(encode_png(wafer_records[0].image))
    npz = folder / "maps.npz"
    maps = tiny_maps(3, 5, min_size=52, max_size=52)
    write_mixedwm38(maps, str(npz))
    return png, npz, maps


def test_predict_prints_one_row_per_image_and_wafer_map(server, input_files, capsys, reference_outputs):
    png, npz, maps = input_files
    code = main(
        ["predict", "--server", f"127.0.0.1:{server.port}", "--model-name", "spanet", "--wait", "5", str(png), str(npz)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].split() == ["file", "class", "confidence", "defective"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == [str(png)] + [f"{npz}#{i}" for i in range(3)]
    assert rows[0][1] == reference_outputs["class_name"][0].decode()
    assert float(rows[0][2]) == pytest.approx(float(reference_outputs["probabilities"][0].max()), abs=1e-4)
    assert rows[0][3] == ("yes" if reference_outputs["defective"][0] else "no")
    assert [r[1] for r in rows[1:]] == [m.label for m in maps]  # the tiny model gets these right


def test_predict_unreachable_server_fails_with_one_clear_line(input_files, free_port, capsys):
    code = main(["predict", "--server", f"127.0.0.1:{free_port}", "--wait", "1", str(input_files[0])])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith(f"spanet predict: error: cannot reach TF Serving at 127.0.0.1:{free_port} within 1 s")


@pytest.mark.parametrize(
    "content, reason", [(b"\x89PNG but cut short", "not a readable PNG/JPEG image"), (b"PK junk", "cannot read it")]
)
def test_predict_unreadable_file_is_named_and_the_others_are_predicted(
    server, tmp_path, capsys, content, reason, input_files
):
    bad = tmp_path / ("broken.png" if content.startswith(b"\x89") else "broken.npz")
    bad.write_bytes(content)
    code = main(["predict", "--server", f"127.0.0.1:{server.port}", str(input_files[0]), str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    assert [line.split()[0] for line in captured.out.strip().splitlines()[2:]] == [str(input_files[0])]
    err = captured.err.strip().splitlines()
    assert err[0].startswith(f"spanet predict: skipped {bad}: {reason}")
    assert err[-1] == "spanet predict: 1 path(s) skipped, 1 input(s) predicted"
    # Nothing readable at all: one line, before any network.
    assert main(["predict", "--server", f"127.0.0.1:{server.port}", str(tmp_path / "missing.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "missing.png: no such file" in err[0] and err[-1].startswith("spanet predict: error: nothing readable")


@pytest.fixture
def folder_with_a_corrupt_file(tmp_path, wafer_records):
    """lot_a/ with two wafer PNGs and a corrupt one, lot_b/ with one PNG and a text file (ignored)."""
    from spanet.data.imageio import encode_png

    for lot, names in {"lot_a": ("w1.png", "w2.png"), "lot_b": ("w3.png",)}.items():
        (tmp_path / lot).mkdir()
        for i, name in enumerate(names):
            (tmp_path / lot / name).write_bytes(encode_png(wafer_records[i + (2 if lot == "lot_b" else 0)].image))
    (tmp_path / "lot_a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "lot_b" / "notes.txt").write_text("not an input")
    return tmp_path


def test_predict_a_folder_to_csv_goes_past_the_corrupt_file(server, folder_with_a_corrupt_file, capsys):
    import csv
    import io

    code = main(["predict", "--server", f"127.0.0.1:{server.port}", "--output", "csv", str(folder_with_a_corrupt_file)])
    captured = capsys.readouterr()
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [os.path.relpath(r["file"], folder_with_a_corrupt_file) for r in rows] == [
        "lot_a/w1.png",
        "lot_a/w2.png",
        "lot_b/w3.png",
    ]
    probabilities = [k for k in rows[0] if k.startswith("p_")]
    assert probabilities and all(abs(sum(float(r[k]) for k in probabilities) - 1.0) < 1e-3 for r in rows)
    assert all(r["defective"] in ("0", "1") and 0.0 <= float(r["defect_score"]) <= 1.0 for r in rows)
    assert "skipped " + str(folder_with_a_corrupt_file / "lot_a" / "corrupt.png") in captured.err


def test_predict_a_glob_to_jsonl_gives_strict_json_per_input(server, folder_with_a_corrupt_file, capsys):
    import json

    def no_nan(value):
        raise ValueError(f"not strict JSON: {value}")

    pattern = str(folder_with_a_corrupt_file / "**" / "w*.png")
    assert main(["predict", "--server", f"127.0.0.1:{server.port}", "--output", "jsonl", pattern]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line, parse_constant=no_nan) for line in lines]
    assert [os.path.basename(r["file"]) for r in records] == ["w1.png", "w2.png", "w3.png"]
    for record in records:
        assert set(record) >= {
            "file",
            "class",
            "confidence",
            "defective",
            "defect_score",
            "unknown",
            "model_version",
            "probabilities",
        }
        assert record["class"] in set(record["probabilities"]) | {"unknown"}
    assert main(["predict", "--server", f"127.0.0.1:{server.port}", str(folder_with_a_corrupt_file / "*.jpg")]) == 1
    assert "matches no file" in capsys.readouterr().err


def test_serve_help_says_what_it_is():
    text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    assert "development and test stand-in" in text and "Production uses TF Serving" in text
    for flag in ("--model-base-path", "--model-name", "--port", "--rest-port", "--poll-seconds"):
        assert flag in text


def test_serve_process_answers_then_stops_on_sigterm(source_base_dir, sample_images, tmp_path):
    """The real ``spanet serve`` process: logs its load, answers a client, exits 0 on SIGTERM."""
    from spanet.serving.client import ServingClient
    from spanet.serving.config import ClientConfig

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spanet.cli",
                "serve",
                "--model-base-path",
                str(source_base_dir),
                "--model-name",
                "wafers",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        port = None
        for _ in range(600):  # up to ~2 min for TensorFlow start-up and the load on a busy machine
            match = re.search(r"on gRPC 127\.0\.0\.1:(\d+)", log_path.read_text())
            if match or proc.poll() is not None:
                port = match and int(match.group(1))
                break
            time.sleep(0.2)
        assert port, log_path.read_text()
        with ServingClient(ClientConfig(target=f"127.0.0.1:{port}", model_name="wafers")) as client:
            assert len(client.predict_images(sample_images[:2])) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert len(re.findall(r"model wafers: loaded version \d+ from ", text)) == 1
    assert "shutting down" in text


def test_predict_shows_unknown_for_an_input_unlike_every_class(server, tmp_path, capsys):
    from spanet.data.probes import unknown_probes

    noise = tmp_path / "noise.png"
    noise.write_bytes(unknown_probes()["noise"][0])
    code = main(
        ["predict", "--server", f"127.0.0.1:{server.port}", "--model-name", "spanet", "--wait", "5", str(noise)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    row = out.strip().splitlines()[2]
    assert row.split()[:4] == [str(noise), "unknown", "-", "yes"] and "sent to review" in row
