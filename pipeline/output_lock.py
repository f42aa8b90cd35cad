"""One run per output root: an exclusive lock on ``<output root>/.lock`` for the life of the run.

Two runs sharing a root would share its ML Metadata store and its serving folder, and each would
report what the other produced. The lock is an ``flock``, so the kernel releases it when the
holding process ends, however it ends; the file only says who held it last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from typing import Iterator

LOCK_FILE = ".lock"


class OutputRootBusy(RuntimeError):
    """Another process is running on this output root."""


@contextlib.contextmanager
def hold_output_root(output_root: str) -> Iterator[str]:
    """Holds the output root's lock for the ``with`` block; OutputRootBusy at once if another run holds it."""
    os.makedirs(output_root, exist_ok=True)
    path = os.path.join(output_root, LOCK_FILE)
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputRootBusy(
                f"output root {os.path.abspath(output_root)} is in use by {holder}; wait for that run to end "
                "or give this one another --output-root"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"process {os.getpid()} ({' '.join(sys.argv) or 'python'}), since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        )
        handle.flush()
        yield path
    finally:
        handle.close()  # closing the descriptor releases the lock
