"""Writing a data set all-or-nothing: into a temporary sibling that is renamed into place at the end.

The temporary sibling's name carries the writer's process id, so a writer that was killed
(SIGKILL, OOM) leaves a folder the next writer of the same output recognises as stale and removes.
What is published follows the user's umask, as any other file they create (``mkdtemp`` and
``mkstemp`` make 0700 / 0600 on their own).
"""

import contextlib
import os
import re
import shutil
import tempfile
from typing import Iterator, List


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _prefix(path: str) -> str:
    return f".{os.path.basename(path)}.partial-"


def remove_stale_partials(path: str) -> List[str]:
    """Removes temporary siblings of ``path`` left by writers that no longer run; returns what was removed."""
    parent, prefix = os.path.dirname(path), _prefix(path)
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        match = pattern.match(name)
        if match and not _pid_alive(int(match.group(1))):
            stale = os.path.join(parent, name)
            shutil.rmtree(stale, ignore_errors=True) if os.path.isdir(stale) else os.remove(stale)
            removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_dir(out_dir: str) -> Iterator[str]:
    """Yield a temporary folder that becomes `out_dir` on success and is removed on failure.

    `out_dir` must not exist yet or be an empty folder, so that nothing of the user's is overwritten.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise FileExistsError(f"output {out_dir!r} already exists and is not an empty folder")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    remove_stale_partials(out_dir)
    tmp = tempfile.mkdtemp(prefix=f"{_prefix(out_dir)}{os.getpid()}-", dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
    """Yield a temporary path next to `path` that replaces `path` on success and is removed on failure."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_stale_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_prefix(path)}{os.getpid()}-", dir=os.path.dirname(path))
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
