"""Request logging as TF Serving's ``logging_config`` does it: sampled Predict calls as PredictionLogs.

Each logged call becomes one ``tensorflow.serving.PredictionLog`` record (``predict_log`` holding the
PredictRequest and the PredictResponse, ``log_metadata`` the model name, version, signature, sampling
config and time) in a TFRecord file under the configured folder, the format TF Serving's own request
logger and warm-up files use, so TFX/TFDV tooling (and ``spanet drift``) reads both.

Files are written safely for readers: records go to ``<prefix>-<start>-<pid>-<n>.tfrecord.tmp`` and
the file is renamed to ``... .tfrecord`` (atomically, ``os.replace``) when it is rotated (size or age,
see ``RequestLogConfig``) or the server stops. A reader that takes ``*.tfrecord`` files therefore
never sees a half-written record. A failure to log is counted and warned about once; it never fails
the request it was logging.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import threading
import time
from typing import Iterator, List, Optional

from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from spanet.serving.config import RequestLogConfig

log = logging.getLogger("spanet.serving")

#: Finished log files end with this; files still being written carry ``TMP_SUFFIX`` after it.
LOG_SUFFIX = ".tfrecord"
TMP_SUFFIX = ".tmp"
#: SavedModel tags of the served graph, recorded as TF Serving does.
SERVING_TAGS = ("serve",)


class RequestLogger:
    """Samples Predict calls and appends them as PredictionLog records to rotating TFRecord files."""

    def __init__(self, config: RequestLogConfig):
        self.config = config
        self.directory = os.path.abspath(config.directory)
        os.makedirs(self.directory, exist_ok=True)
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._writer = None
        self._tmp_path: Optional[str] = None
        self._opened_at = 0.0
        self._bytes = 0
        self._file_index = 0
        self._start = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._closed = False
        #: Calls seen, logged, and failed to log (failures never fail the call).
        self.seen = 0
        self.logged = 0
        self.failures = 0

    def sampled(self) -> bool:
        """Draw whether the next call is logged (deterministic for a seed, in call order)."""
        with self._lock:
            self.seen += 1
            return self._rng.random() < self.config.sampling_rate

    def log_predict(self, request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse) -> bool:
        """Log one successful Predict call if the sampler picks it; returns whether it was written."""
        if not self.sampled():
            return False
        try:
            record = self._record(request, response).SerializeToString()
            with self._lock:
                if self._closed:
                    return False
                self._write(record)
                self.logged += 1
            return True
        except Exception as exc:  # a logging failure must never fail the request
            with self._lock:
                self.failures += 1
                first = self.failures == 1
            if first:
                log.warning(
                    "request log: cannot write to %s (%s: %s); requests go on", self.directory, type(exc).__name__, exc
                )
            return False

    def _record(
        self, request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse
    ) -> prediction_log_pb2.PredictionLog:
        record = prediction_log_pb2.PredictionLog()
        meta = record.log_metadata
        meta.model_spec.CopyFrom(response.model_spec)  # name, the version that answered, the signature run
        meta.sampling_config.sampling_rate = self.config.sampling_rate
        meta.saved_model_tags.extend(SERVING_TAGS)
        meta.timestamp_secs = int(time.time())
        record.predict_log.request.CopyFrom(request)
        record.predict_log.response.CopyFrom(response)
        return record

    def _write(self, record: bytes) -> None:
        """Append under the lock, rotating first when the open file is full or old."""
        import tensorflow as tf

        now = time.monotonic()
        if self._writer is not None and (
            self._bytes >= self.config.max_file_bytes or now - self._opened_at >= self.config.max_file_age_s
        ):
            self._finish()
        if self._writer is None:
            self._file_index += 1
            name = f"{self.config.filename_prefix}-{self._start}-{os.getpid()}-{self._file_index:05d}{LOG_SUFFIX}"
            self._tmp_path = os.path.join(self.directory, name + TMP_SUFFIX)
            self._writer = tf.io.TFRecordWriter(self._tmp_path)
            self._opened_at, self._bytes = now, 0
        self._writer.write(record)
        self._writer.flush()
        self._bytes += len(record) + 16  # TFRecord framing: length, its CRC and the data's CRC

    def _finish(self) -> None:
        """Close the open file and give it its final name (readers see whole files only)."""
        writer, tmp = self._writer, self._tmp_path
        self._writer, self._tmp_path = None, None
        if writer is None or tmp is None:
            return
        writer.close()
        os.replace(tmp, tmp[: -len(TMP_SUFFIX)])

    def rotate(self) -> None:
        """Finish the open file now (its records become visible to readers)."""
        with self._lock:
            try:
                self._finish()
            except Exception as exc:
                self.failures += 1
                log.warning("request log: cannot finish a file in %s (%s)", self.directory, exc)

    def close(self) -> None:
        """Finish the open file and log nothing more; logs one summary line."""
        self.rotate()
        with self._lock:
            self._closed = True
        log.info(
            "request log: %d of %d call(s) logged to %s%s",
            self.logged,
            self.seen,
            self.directory,
            f", {self.failures} failure(s)" if self.failures else "",
        )


def log_files(directory: str) -> List[str]:
    """The finished PredictionLog files of a folder (a single file is taken as it is), in name order."""
    if os.path.isfile(directory):
        return [directory]
    return sorted(glob.glob(os.path.join(glob.escape(directory), "**", f"*{LOG_SUFFIX}"), recursive=True))


def read_prediction_logs(path: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """Every PredictionLog record of a log folder's finished files (or of one TFRecord file)."""
    import tensorflow as tf

    for name in log_files(path):
        for raw in tf.data.TFRecordDataset(name).as_numpy_iterator():
            yield prediction_log_pb2.PredictionLog.FromString(raw)
