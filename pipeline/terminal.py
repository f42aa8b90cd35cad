"""What a person sees during a local run: a line per component and the Trainer's epochs; the rest goes to a log.

TensorFlow's C++ logs, Beam's worker processes, library warnings and the interpreter's "Exception
ignored" notes all write to file descriptor 2; :class:`RunLog` points it at a log file under the
output root for the length of the run (``--verbose`` leaves the terminal as it is), turns on TFX's
INFO logging there, and keeps a stream on the real terminal for the run's own messages. Standard
output is untouched: the run's summary and the Trainer's epoch lines are printed there.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Dict, Optional, TextIO

#: TFX's LocalDagRunner and launcher log these (tfx/orchestration/local/local_dag_runner.py, portable/launcher.py).
_RUNNING = "Component %s is running."
_FINISHED = "Component %s is finished."
_CACHED = "A cached execution %d is used."


class ComponentProgress(logging.Handler):
    """Prints ``[i/n] Name running`` and ``[i/n] Name done in N s`` (or ``cached``) from TFX's own log records."""

    def __init__(self, stream: TextIO, total: int):
        super().__init__(level=logging.INFO)
        self.stream = stream
        self.total = total
        self._started: Dict[str, float] = {}
        self._cached = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == _RUNNING and record.args:
            name, self._cached = str(record.args[0]), False
            self._started[name] = time.monotonic()
            self._print(f"{name} running")
        elif record.msg == _CACHED:
            self._cached = True
        elif record.msg == _FINISHED and record.args:
            name = str(record.args[0])
            seconds = time.monotonic() - self._started.get(name, time.monotonic())
            self._print(f"{name} {'cached' if self._cached else 'done'} in {seconds:.0f} s")

    def _print(self, text: str) -> None:
        self.stream.write(f"[{len(self._started)}/{self.total}] {text}\n")
        self.stream.flush()


class RunLog:
    """Sends file descriptor 2 and Python logging (TFX's INFO included) to ``path`` while the run lasts;
    ``terminal`` is the real stderr, for the run's own messages.

    ``verbose``: the terminal shows everything as well (INFO logging included); the file still gets the logging.
    """

    def __init__(self, path: str, components: int, verbose: bool = False):
        self.path = os.path.abspath(path)
        self.verbose = verbose
        self.progress = ComponentProgress(sys.stdout, components)
        self.terminal: TextIO = sys.stderr
        self._saved_fd: Optional[int] = None
        self._log: Optional[TextIO] = None
        self._absl_level: Optional[int] = None
        self._saved_stderr: TextIO = sys.stderr
        self._file_handler: Optional[logging.Handler] = None
        self._removed_absl_handler = False

    def __enter__(self) -> "RunLog":
        from absl import logging as absl_logging

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._log = open(self.path, "a", encoding="utf-8")
        self._absl_level = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.INFO)
        logging.getLogger("absl").addHandler(self.progress)
        # Python logging (absl's included) to the file by a handler of its own: absl's handler writes to
        # whatever sys.stderr was when absl was imported, and it leaves the root logger unless verbose.
        root = logging.getLogger()
        absl_handler = absl_logging.get_absl_handler()
        self._file_handler = logging.StreamHandler(self._log)
        self._file_handler.setFormatter(absl_logging.PythonFormatter())
        root.addHandler(self._file_handler)
        self._removed_absl_handler = not self.verbose and absl_handler in root.handlers
        if self._removed_absl_handler:
            root.removeHandler(absl_handler)
        if not self.verbose:
            sys.stderr.flush()
            self._saved_fd = os.dup(2)
            self.terminal = os.fdopen(os.dup(self._saved_fd), "w", buffering=1, encoding="utf-8")
            os.dup2(self._log.fileno(), 2)
            # Python-level writes too, wherever sys.stderr points (under pytest it is not descriptor 2).
            self._saved_stderr, sys.stderr = sys.stderr, self._log
        return self

    def __exit__(self, *exc) -> None:
        # Ctrl-C is held off while the terminal is given back: cut short here (run_local repeats an
        # interrupt until it is handled), the run's last words would go to the log file.
        main = threading.current_thread() is threading.main_thread()
        held = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self._restore()
        finally:
            if main:
                signal.signal(signal.SIGINT, held)

    def _restore(self) -> None:
        from absl import logging as absl_logging

        logging.getLogger("absl").removeHandler(self.progress)
        root = logging.getLogger()
        root.removeHandler(self._file_handler)
        if self._removed_absl_handler:
            root.addHandler(absl_logging.get_absl_handler())
        if self._absl_level is not None:
            absl_logging.set_verbosity(self._absl_level)
        if self._saved_fd is not None:
            # TensorFlow's functions collected now, while their destructors' notes still go to the log.
            gc.collect()
            sys.stderr.flush()
            sys.stderr = self._saved_stderr
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            self.terminal.close()
            self.terminal = sys.stderr
        if self._log is not None:
            self._log.close()
