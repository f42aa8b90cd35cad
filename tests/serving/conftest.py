"""Fixtures of the serving tests: the pushed model, a local server on a free loopback port, a client.

The model is the one the shared ``pushed_model_dir`` fixture pushes (the project's Trainer export).
Set ``SPANET_SERVING_TEST_BASE=<base dir>`` to use an already pushed base directory instead while
developing (it skips the ~1.5 min pipeline run); CI leaves it unset.
"""

import os
import shutil
import socket
from pathlib import Path

import pytest

#: The server's message limit in the tests: small, so that "over the limit" is cheap to send.
TEST_SERVER_MAX_MESSAGE = 4 * 1024 * 1024


def encode_blank_png(width: int, height: int) -> bytes:
    """A valid grey PNG of width x height black pixels, deflated row by row: 20000 x 20000 is ~390 KB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def blank_png():
    """:func:`encode_blank_png`: ``blank_png(width, height)`` -> the bytes of a valid black grey PNG."""
    return encode_blank_png


@pytest.fixture(scope="session")
def source_base_dir(request) -> Path:
    """A TF Serving base directory holding one version exported by the project's Trainer."""
    override = os.environ.get("SPANET_SERVING_TEST_BASE")
    if override:
        return Path(override)
    return request.getfixturevalue("pushed_model_dir")


def copy_base(source: Path, target: Path) -> Path:
    """A private copy of a base directory (tests add versions to it)."""
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="session")
def serving_base(source_base_dir, tmp_path_factory) -> Path:
    return copy_base(source_base_dir, tmp_path_factory.mktemp("serving") / "spanet")


@pytest.fixture(scope="session")
def served_version(serving_base) -> int:
    from spanet.serving.model_manager import list_versions

    versions = list_versions(str(serving_base))
    assert versions, f"no version in {serving_base}"
    return versions[-1]


@pytest.fixture(scope="session")
def server(serving_base):
    """The local server on free loopback ports (gRPC and REST), polling every 0.5 s."""
    from spanet.serving.config import ServerConfig
    from spanet.serving.server import LocalServer

    config = ServerConfig(
        model_base_path=str(serving_base),
        model_name="spanet",
        host="127.0.0.1",
        port=0,
        rest_port=0,
        poll_interval_s=0.5,
        max_message_bytes=TEST_SERVER_MAX_MESSAGE,
        max_workers=8,
    )
    with LocalServer(config) as running:
        yield running


@pytest.fixture()
def client(server):
    from spanet.serving.config import ClientConfig, RetryPolicy
    from spanet.serving.client import ServingClient

    config = ClientConfig(
        target=f"127.0.0.1:{server.port}",
        model_name="spanet",
        timeout_s=30,
        batch_size=5,
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.05),
    )
    with ServingClient(config) as c:
        yield c


@pytest.fixture(scope="session")
def wafer_records(tiny_maps):
    """A dozen synthetic wafer maps of the tiny model's problem, of varied grid sizes (26-64 dies)."""
    return tiny_maps(12, 11)


@pytest.fixture(scope="session")
def sample_images(wafer_records):
    """Encoded inputs: grey PNGs of the wafer maps, plus one RGB PNG and one JPEG of the same maps."""
    import io

    import numpy as np
    from PIL import Image

    from spanet.data.imageio import encode_png

    images = [encode_png(r.image) for r in wafer_records]
    images.append(encode_png(np.repeat(wafer_records[0].image[:, :, None], 3, axis=2)))
    buf = io.BytesIO()
    Image.fromarray(wafer_records[1].image).save(buf, format="JPEG", quality=95)
    images.append(buf.getvalue())
    return images


@pytest.fixture(scope="session")
def reference_outputs(serving_base, served_version, sample_images):
    """serving_default called in-process on the same SavedModel (tf.saved_model.load), as numpy."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(serving_base / str(served_version)))
    outputs = loaded.signatures["serving_default"](images=tf.constant(sample_images, dtype=tf.string))
    class_names = [n.decode() for n in loaded.class_names.numpy().tolist()]
    return {"class_names": class_names, **{k: v.numpy() for k, v in outputs.items()}}


@pytest.fixture()
def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
