"""A new version dropped into the base directory is picked up while clients keep sending: no request fails."""

import os
import shutil
import threading
import time

import grpc
import pytest

from spanet.serving.client import ServingClient, ServingRequestError
from spanet.serving.config import ClientConfig, ServerConfig
from spanet.serving.server import LocalServer

pytestmark = pytest.mark.slow

CLIENT_THREADS = 4
#: Safety bound on the requests one thread sends (the loop normally stops much earlier).
MAX_REQUESTS_PER_THREAD = 3000
#: Responses the new version must give after the swap before the senders stop.
AFTER_SWAP_RESPONSES = 20


def test_new_version_is_loaded_then_swapped_without_failed_requests(source_base_dir, tmp_path, sample_images, caplog):
    base = tmp_path / "spanet"
    shutil.copytree(source_base_dir, base)
    (old,) = [int(n) for n in os.listdir(base) if n.isdigit()]
    new = old + 1
    config = ServerConfig(model_base_path=str(base), host="127.0.0.1", port=0, poll_interval_s=0.3)
    caplog.set_level("INFO", logger="spanet.serving")
    with LocalServer(config) as server:
        target = f"127.0.0.1:{server.port}"
        versions, failures, lock = [], [], threading.Lock()
        stop = threading.Event()

        def send(worker: int) -> None:
            with ServingClient(ClientConfig(target=target, timeout_s=60)) as client:
                for n in range(MAX_REQUESTS_PER_THREAD):
                    if stop.is_set():
                        return
                    try:
                        answers = client.predict_images(sample_images[worker : worker + 2])
                        with lock:
                            versions.extend(p.model_version for p in answers[:1])
                    except Exception as exc:  # any failure counts
                        with lock:
                            failures.append(repr(exc))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(CLIENT_THREADS)]
        for t in threads:
            t.start()
        while len(versions) < 8 and any(t.is_alive() for t in threads):
            time.sleep(0.05)
        # publish the new version the way a pusher should: write aside, then one rename
        staging = base / f".staging-{new}"
        shutil.copytree(base / str(old), staging)
        os.rename(staging, base / str(new))
        while any(t.is_alive() for t in threads):
            with lock:
                if versions.count(new) >= AFTER_SWAP_RESPONSES:
                    break
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(timeout=120)

        assert failures == []
        assert set(versions) == {old, new}
        first_new = versions.index(new)
        # after the switch only requests already running on the old version (one per other thread) answer from it
        assert versions[first_new:].count(old) <= CLIENT_THREADS - 1
        with ServingClient(ClientConfig(target=target)) as client:
            assert client.model_status() == [(new, "AVAILABLE"), (old, "END")]
        with ServingClient(ClientConfig(target=target, model_version=old)) as pinned:
            with pytest.raises(ServingRequestError) as raised:
                pinned.predict_images(sample_images[:1])
            assert raised.value.code == grpc.StatusCode.NOT_FOUND
    loads = [r.getMessage() for r in caplog.records if "loaded version" in r.getMessage()]
    assert len(loads) == 2 and loads[1].endswith(f"serving version {new} (unloaded {old})")
