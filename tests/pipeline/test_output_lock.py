"""One run per output root: a second run stops at once, naming the process that holds the root."""

import os
import subprocess
import sys

import pytest

from pipeline import run_local
from pipeline.output_lock import LOCK_FILE, OutputRootBusy, hold_output_root

_HOLDER = """
import sys, time
from pipeline.output_lock import hold_output_root
with hold_output_root(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_the_lock_is_exclusive_and_released(tmp_path):
    with hold_output_root(str(tmp_path)):
        with pytest.raises(OutputRootBusy, match=rf"in use by process {os.getpid()} "):
            with hold_output_root(str(tmp_path)):
                pass
    with hold_output_root(str(tmp_path)):  # released at the end of the block
        pass


def test_a_second_run_on_a_held_root_stops_in_one_line_before_any_work(tmp_path, capsys):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_local.main(["--output-root", str(tmp_path)]) == run_local.EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by process {holder.pid} " in err[0] and "--output-root" in err[0]
        assert sorted(os.listdir(tmp_path)) == [LOCK_FILE]  # no data generated, no metadata
    finally:
        holder.communicate("\n", timeout=30)
    # The holder ended, so the kernel released its lock (even a killed holder's).
    with hold_output_root(str(tmp_path)):
        pass
