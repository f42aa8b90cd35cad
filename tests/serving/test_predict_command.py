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
    code = main(["predict", "--server", f"127.0.0.1:{server.port}", "--model-name", "spanet", "--wait", "5", str(png), str(npz)])
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


@pytest.mark.parametrize("content, reason", [(b"\x89PNG but cut short", "not a readable PNG/JPEG image"), (b"PK junk", "cannot read it")])
def test_predict_unreadable_file_is_named(server, tmp_path, capsys, content, reason, input_files):
    bad = tmp_path / ("broken.png" if content.startswith(b"\x89") else "broken.npz")
    bad.write_bytes(content)
    code = main(["predict", "--server", f"127.0.0.1:{server.port}", str(input_files[0]), str(bad)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"spanet predict: error: {bad}: {reason}")
    assert main(["predict", "--server", f"127.0.0.1:{server.port}", str(tmp_path / "missing.png")]) == 1
    assert "missing.png: no such file" in capsys.readouterr().err


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
            [sys.executable, "-m", "spanet.cli", "serve", "--model-base-path", str(source_base_dir), "--model-name", "wafers",
             "--host", "127.0.0.1", "--port", "0"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
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
    code = main(["predict", "--server", f"127.0.0.1:{server.port}", "--model-name", "spanet", "--wait", "5", str(noise)])
    out = capsys.readouterr().out
    assert code == 0, out
    row = out.strip().splitlines()[2]
    assert row.split()[:4] == [str(noise), "unknown", "-", "yes"] and "sent to review" in row
