"""The versions of one model in a TF Serving base directory: discover, load, warm, swap, watch.

TF Serving's file-system source serves ``<base>/<version>/`` where ``<version>`` is an integer and
(by the default "latest" policy) only the newest one. The Pusher copies ``saved_model.pb`` last,
so a version folder counts only once that file is there. A new version is loaded completely and
warmed while the old one keeps answering; then one reference assignment switches to it. Requests
already running hold their own reference to the old version, so none fails during the swap.

A version that fails to load (a partial copy, a broken export) is retried until it loads: at the
next scan once any of its files changes (name, size, modification or change time), and otherwise
after a wait that doubles from the poll interval up to ``retry_max_interval_s`` (a transient
failure). Its error is logged once per distinct failure, not once per retry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2

from spanet.serving.config import ServerConfig
from spanet.serving.errors import not_found

log = logging.getLogger("spanet.serving")

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
State = get_model_status_pb2.ModelVersionStatus.State


@dataclass
class ServableVersion:
    """One loaded version: its SignatureDefs (as TF Serving reports them) and callable signatures."""

    version: int
    path: str
    loaded: Any
    signature_defs: Dict[str, meta_graph_pb2.SignatureDef]
    functions: Dict[str, Any] = field(default_factory=dict)

    def input_specs(self, signature_name: str) -> Dict[str, tf.TensorSpec]:
        """The input name -> TensorSpec of a callable signature."""
        return dict(self.functions[signature_name].structured_input_signature[1])


@dataclass(frozen=True)
class _Failure:
    """The last failed load of a version: what its files were, why it failed, when to try again."""

    fingerprint: Tuple
    message: str
    attempts: int
    retry_at: float


def version_fingerprint(path: str) -> Tuple:
    """(relative path, size, mtime_ns, ctime_ns, inode) of every file under `path`: changes whenever a copy goes on."""
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(entries)


def list_versions(base_path: str) -> List[int]:
    """The complete versions in `base_path`, oldest first: integer folder names holding a saved_model.pb."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    versions = []
    for name in names:
        if name.isdigit() and any(os.path.isfile(os.path.join(base_path, name, f)) for f in SAVED_MODEL_FILES):
            versions.append(int(name))
    return sorted(versions)


def read_signature_defs(path: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDef map of the SavedModel at `path` (the serving meta graph), as GetModelMetadata returns it."""
    saved_model = saved_model_pb2.SavedModel()
    pb = os.path.join(path, "saved_model.pb")
    if os.path.isfile(pb):
        with open(pb, "rb") as fh:
            saved_model.ParseFromString(fh.read())
    else:
        from google.protobuf import text_format

        with open(os.path.join(path, "saved_model.pbtxt"), "r", encoding="utf-8") as fh:
            text_format.Parse(fh.read(), saved_model)
    graphs = [g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags] or list(saved_model.meta_graphs)
    if not graphs:
        raise ValueError(f"{path}: the SavedModel holds no meta graph")
    return dict(graphs[0].signature_def)


def load_version(base_path: str, version: int) -> ServableVersion:
    """Load `<base_path>/<version>` completely (variables restored, signatures callable)."""
    path = os.path.join(base_path, str(version))
    loaded = tf.saved_model.load(path, tags=["serve"])
    functions = dict(loaded.signatures)
    return ServableVersion(
        version=version, path=path, loaded=loaded, signature_defs=read_signature_defs(path), functions=functions
    )


class ModelManager:
    """Serves the newest version of one model from a base directory, switching to newer ones as they land.

    `warmup` is called with each freshly loaded version before the switch (an exception fails the load).
    """

    def __init__(
        self,
        model_name: str,
        base_path: str,
        poll_interval_s: float = 1.0,
        warmup: Optional[Callable[[ServableVersion], None]] = None,
        retry_max_interval_s: float = ServerConfig.load_retry_max_s,
    ):
        self.model_name = model_name
        self.base_path = os.path.abspath(base_path)
        self.poll_interval_s = poll_interval_s
        self.retry_max_interval_s = retry_max_interval_s
        self._warmup = warmup
        self._current: Optional[ServableVersion] = None
        self._states: Dict[int, Tuple[int, str]] = {}  # version -> (State, error message)
        self._failed: Dict[int, _Failure] = {}  # version -> its last failed load
        self._lock = threading.Lock()  # serialises loads (poll thread vs. explicit refresh)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- requests -------------------------------------------------------------------------------------
    def get(self, model_name: str, version: Optional[int] = None) -> ServableVersion:
        """The version to answer with (the served one, or the asked one if it is served); NOT_FOUND otherwise."""
        current = self._current  # one read: the swap cannot change it under this request
        if model_name != self.model_name or current is None:
            what = f"Specific({model_name}, {version})" if version is not None else f"Latest({model_name})"
            raise not_found(f"Servable not found for request: {what}")
        if version is not None and version != current.version:
            raise not_found(f"Servable not found for request: Specific({model_name}, {version})")
        return current

    @property
    def current_version(self) -> Optional[int]:
        current = self._current
        return None if current is None else current.version

    def status(self, model_name: str, version: Optional[int] = None) -> List[Tuple[int, int, str]]:
        """(version, State, error message) of the versions this server has seen, like GetModelStatus."""
        if model_name != self.model_name or not self._states:
            raise not_found(f"Could not find any versions of model {model_name}")
        states = dict(self._states)
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {model_name}")
            return [(version, *states[version])]
        return [(v, *states[v]) for v in sorted(states, reverse=True)]

    # -- loading --------------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Scan the base directory once; load and switch to the newest version if it is not the served one.

        Returns True if the served version changed. A version that fails to load is logged, marked
        with its error, and retried at a later scan (see the module docstring); the old version
        keeps serving meanwhile.
        """
        with self._lock:
            versions = list_versions(self.base_path)
            if not versions:
                return False
            target = versions[-1]
            current = self._current
            if current is not None and current.version == target:
                return False
            path = os.path.join(self.base_path, str(target))
            fingerprint = version_fingerprint(path)
            failed = self._failed.get(target)
            if failed is not None and failed.fingerprint == fingerprint and time.monotonic() < failed.retry_at:
                return False
            self._states[target] = (State.LOADING, "")
            started = time.monotonic()
            try:
                servable = load_version(self.base_path, target)
                if self._warmup is not None:
                    self._warmup(servable)
            except Exception as exc:  # a broken version must not take the server down
                self._record_failure(target, fingerprint, f"{type(exc).__name__}: {exc}", failed)
                return False
            self._failed.pop(target, None)
            self._current = servable  # the atomic switch
            self._states[target] = (State.AVAILABLE, "")
            if current is not None:
                self._states[current.version] = (State.END, "")
            log.info(
                "model %s: loaded version %d from %s in %.1f s%s; serving version %d%s",
                self.model_name,
                target,
                servable.path,
                time.monotonic() - started,
                f" (after {failed.attempts} failed attempts)" if failed is not None else "",
                target,
                f" (unloaded {current.version})" if current is not None else "",
            )
            return True

    def _record_failure(self, version: int, fingerprint: Tuple, message: str, previous: Optional[_Failure]) -> None:
        """Mark a failed load, schedule its retry, and log it unless it is the same failure as last time."""
        message = " ".join(message.split())[:1000]
        same_files = previous is not None and previous.fingerprint == fingerprint
        attempts = previous.attempts + 1 if same_files else 1
        wait = min(self.retry_max_interval_s, self.poll_interval_s * 2 ** (attempts - 1))
        self._failed[version] = _Failure(fingerprint, message, attempts, time.monotonic() + wait)
        self._states[version] = (State.END, message)
        if same_files and previous.message == message:
            log.debug(
                "model %s: version %d still fails to load (attempt %d; next in %.1f s): %s",
                self.model_name,
                version,
                attempts,
                wait,
                message,
            )
        else:
            log.error(
                "model %s: failed to load version %d from %s (retrying when its files change, or in %.1f s): %s",
                self.model_name,
                version,
                self.base_path,
                wait,
                message,
            )

    # -- watching -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the newest version now (if any), then watch the base directory on a daemon thread."""
        if not os.path.isdir(self.base_path):
            raise FileNotFoundError(f"model base path {self.base_path!r} does not exist or is not a folder")
        self.refresh()
        if self._current is None:
            log.warning("model %s: no version found under %s yet; watching for one", self.model_name, self.base_path)
        self._thread = threading.Thread(target=self._watch, name=f"watch-{self.model_name}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.refresh()
            except Exception:  # keep watching whatever happens in one scan
                log.exception("model %s: scanning %s failed", self.model_name, self.base_path)

    def stop(self) -> None:
        """Stop watching (the served version stays loaded until the manager is dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.poll_interval_s))
