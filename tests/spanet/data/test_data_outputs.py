"""All-or-nothing outputs: a killed writer's leftovers are cleaned up, published files follow the umask."""

import os
import signal
import stat
import subprocess
import sys

import pytest

from spanet.data import generate_wafer_maps, write_dataset
from spanet.data.formats.outputs import atomic_dir, remove_stale_partials

_KILLED_WRITER = """
import os, signal, sys
from spanet.data.formats.outputs import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    open(os.path.join(tmp, "half.png"), "wb").write(b"x" * 100)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _partials(parent):
    return sorted(n for n in os.listdir(parent) if ".partial-" in n)


def test_a_killed_writers_partial_folder_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "maps"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(out)],
        cwd=os.path.dirname(root),
        env={**os.environ, "PYTHONPATH": os.path.dirname(root)},
    )
    assert done.returncode == -signal.SIGKILL
    assert len(_partials(tmp_path)) == 1 and not out.exists()

    write_dataset(generate_wafer_maps(4, 0, min_size=20, max_size=22), str(out), "png")
    assert _partials(tmp_path) == []
    assert (out / "manifest.csv").exists()


def test_a_live_writers_partial_folder_is_kept(tmp_path):
    with atomic_dir(str(tmp_path / "maps")) as tmp:
        assert remove_stale_partials(str(tmp_path / "maps")) == []
        assert os.path.isdir(tmp)


@pytest.mark.parametrize(
    "umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)]
)
@pytest.mark.parametrize("data_format", ["png", "npz"])
def test_published_data_follows_the_umask(tmp_path, umask, dir_mode, file_mode, data_format):
    out = tmp_path / ("maps.npz" if data_format == "npz" else "maps")
    previous = os.umask(umask)
    try:
        write_dataset(generate_wafer_maps(3, 0, min_size=20, max_size=22), str(out), data_format)
    finally:
        os.umask(previous)
    if data_format == "npz":
        assert stat.S_IMODE(out.stat().st_mode) == file_mode
    else:
        assert stat.S_IMODE(out.stat().st_mode) == dir_mode
        assert stat.S_IMODE((out / "manifest.csv").stat().st_mode) == file_mode
