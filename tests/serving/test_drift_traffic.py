"""Drift end to end: maps sent to `spanet serve` with a request log, compared by `spanet drift` with a
baseline of the training distribution scored by the same model (`spanet drift baseline --model-dir`)."""

import json
import shutil

import numpy as np
import pytest

from spanet.cli import main
from spanet.data.imageio import encode_png
from spanet.data.writers import write_dataset
from spanet.serving.client import ServingClient
from spanet.serving.config import ClientConfig, RequestLogConfig, ServerConfig
from spanet.serving.request_log import log_files
from spanet.serving.server import LocalServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(serving_base, tiny_maps, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift_baseline")
    write_dataset(tiny_maps(300, 1), str(folder / "png"), "png")
    out = folder / "baseline.pb"
    argv = ["drift", "baseline", "--data", str(folder / "png"), "--out", str(out), "--model-dir", str(serving_base)]
    assert main(argv) == 0
    return out


def _serve_and_log(serving_base, folder, batches):
    """Serve with a request log in `folder`; each batch of maps is sent, then its log files are moved to
    their own sub-folder (one server, one model load)."""
    config = ServerConfig(
        model_base_path=str(serving_base),
        host="127.0.0.1",
        port=0,
        request_log=RequestLogConfig(directory=str(folder / "all"), sampling_rate=1.0, seed=0),
    )
    logs = []
    with LocalServer(config) as server:
        with ServingClient(ClientConfig(target=f"127.0.0.1:{server.port}", batch_size=50)) as client:
            for k, images in enumerate(batches):
                assert len(client.predict_images([encode_png(im) for im in images])) == len(images)
                server.request_log.rotate()
                (folder / str(k)).mkdir()
                for path in log_files(str(folder / "all")):
                    shutil.move(path, folder / str(k))
                logs.append(str(folder / str(k)))
    return logs


def _drift(logs, baseline, out):
    status = main(["drift", "--logs", logs, "--baseline", str(baseline), "--out", str(out)])
    return status, json.loads((out / "drift.json").read_text())


def test_served_traffic_like_training_is_quiet_and_doubled_fail_density_drifts(
    serving_base, baseline, tiny_maps, tmp_path
):
    records = tiny_maps(200, 2)
    rng = np.random.default_rng(0)
    shifted = []
    for r in records:
        image = r.image.copy()
        flat = image.reshape(-1)
        passing = np.flatnonzero(flat == 128)
        flat[rng.choice(passing, min(len(passing), int((flat == 255).sum())), replace=False)] = 255
        shifted.append(image)
    quiet_logs, shifted_logs = _serve_and_log(serving_base, tmp_path, [[r.image for r in records], shifted])
    status, summary = _drift(quiet_logs, baseline, tmp_path / "quiet_report")
    print("served quiet:", {m["feature"]: round(m["value"], 4) for m in summary["measurements"]})
    assert status == 0 and summary["traffic_wafers"] == 200, summary

    status, summary = _drift(shifted_logs, baseline, tmp_path / "shifted_report")
    print("served doubled fail density:", {m["feature"]: round(m["value"], 4) for m in summary["measurements"]})
    assert status == 1 and "fail_fraction" in {a["feature"] for a in summary["anomalies"]}
