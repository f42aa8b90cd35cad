"""Every serving setting in one typed place: the server's, the client's and their shared limits.

TF Serving defaults are mirrored where one exists (ports 8500/8501, signature ``serving_default``,
the base directory polled for new versions); limits that matter for image batches (gRPC's 4 MiB
default message size) are raised.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

#: gRPC's default message limit is 4 MiB: too small for a batch of images.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
from spanet.serving.contract import DEFAULT_MODEL_NAME, DEFAULT_SIGNATURE  # noqa: E402,F401  (DEFAULT_SIGNATURE re-exported)

DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
#: Bytes of memory one declared pixel can take while the model decodes it (per channel decoded):
#: the uint8 image plus its float32 copy (5), or a progressive JPEG's coefficient buffers (up to 8).
DECODE_BYTES_PER_PIXEL = 8


@dataclass(frozen=True)
class TLSConfig:
    """TLS files (PEM). Client: `root_certs` checks the server, `cert_chain` + `private_key` for mutual TLS.
    Server: `cert_chain` + `private_key` are its identity, `root_certs` (optional) requires client certs."""

    root_certs: Optional[str] = None
    cert_chain: Optional[str] = None
    private_key: Optional[str] = None
    #: Client only: the host name to check the server certificate against (e.g. for 127.0.0.1 tests).
    server_name_override: Optional[str] = None

    def read(self) -> Tuple[Optional[bytes], Optional[bytes], Optional[bytes]]:
        """The (root certs, private key, cert chain) bytes; OSError names a missing file."""

        def load(path: Optional[str], what: str) -> Optional[bytes]:
            if not path:
                return None
            try:
                with open(path, "rb") as fh:
                    return fh.read()
            except OSError as exc:
                raise OSError(f"cannot read TLS {what} file {path!r}: {exc.strerror or exc}") from None

        return (
            load(self.root_certs, "root certificates"),
            load(self.private_key, "private key"),
            load(self.cert_chain, "certificate chain"),
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of calls that fail with UNAVAILABLE (server starting, restarting, unreachable): exponential backoff."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def backoffs(self):
        """The waits between attempts: max_attempts - 1 of them."""
        wait = self.initial_backoff_s
        for _ in range(max(0, self.max_attempts - 1)):
            yield min(wait, self.max_backoff_s)
            wait *= self.multiplier


@dataclass(frozen=True)
class ClientConfig:
    """How the client reaches TF Serving (or the local server) and what it asks for."""

    target: str = f"localhost:{DEFAULT_GRPC_PORT}"
    model_name: str = DEFAULT_MODEL_NAME
    #: None: the newest version the server has; else a pinned version.
    model_version: Optional[int] = None
    signature_name: str = DEFAULT_SIGNATURE
    #: Deadline of each RPC.
    timeout_s: float = 30.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: Images per Predict request.
    batch_size: int = 32
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tls: Optional[TLSConfig] = None
    #: The model's class order (index of `probabilities` -> name). None: asked from the model's
    #: ``class_names`` signature if it has one, else learned from (class_id, class_name) answers.
    class_names: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what a client controls in one request, checked before anything is decoded.

    The pixel limits are read from each image's header (PNG IHDR, JPEG SOFn, GIF screen and
    frames, BMP info header), so an image is refused without being decoded. Memory for decoding
    is then at most ``max_concurrent_predictions * max_batch_pixels * DECODE_BYTES_PER_PIXEL``
    (about 512 MiB with these defaults) plus the model's activations for ``max_batch_images``
    inputs per running request (about 90 MiB for SP&A-Net at 64x64 and 256 images).
    """

    #: Images (values of a string input) in one request; TF Serving's batching also refuses larger tasks.
    max_batch_images: int = 256
    #: Declared width x height of one image: 4096 x 4096, room for a 12-megapixel photograph.
    max_image_pixels: int = 4096 * 4096
    #: Declared pixels of all the images of one request together: two images at the per-image limit.
    max_batch_pixels: int = 2 * 4096 * 4096
    #: Requests that decode and run the model at once (gRPC and REST together); others wait for a slot.
    max_concurrent_predictions: int = 2
    #: Seconds a request waits for a slot before RESOURCE_EXHAUSTED (less if its gRPC deadline is sooner).
    max_queue_wait_s: float = 30.0

    def __post_init__(self):
        for name in ("max_batch_images", "max_image_pixels", "max_batch_pixels", "max_concurrent_predictions"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RequestLimits.{name} must be an integer >= 1; got {getattr(self, name)!r}")
        if not self.max_queue_wait_s >= 0:
            raise ValueError(f"RequestLimits.max_queue_wait_s must be >= 0; got {self.max_queue_wait_s!r}")

    def decode_bytes_bound(self) -> int:
        """The most memory the admitted requests can take decoding images at once (one channel decoded)."""
        return self.max_concurrent_predictions * self.max_batch_pixels * DECODE_BYTES_PER_PIXEL


@dataclass(frozen=True)
class RequestLogConfig:
    """Request logging as TF Serving's ``logging_config`` does it: a sampled share of Predict calls
    written as ``PredictionLog`` TFRecords under ``directory`` (see ``spanet.serving.request_log``)."""

    directory: str
    #: Share of successful Predict calls logged, in (0, 1] (TF Serving's ``sampling_config.sampling_rate``).
    sampling_rate: float = 1.0
    #: Seed of the sampling draws: None draws from the OS; a seed makes the logged subset reproducible (tests).
    seed: Optional[int] = None
    #: File names start with this (TF Serving's ``log_collector_config.filename_prefix``, without the folder).
    filename_prefix: str = "prediction_log"
    #: A file is closed (renamed to its final ``.tfrecord`` name) once it holds this many bytes ...
    max_file_bytes: int = 64 * 1024 * 1024
    #: ... or once it is this many seconds old (checked at each logged request and on shutdown).
    max_file_age_s: float = 60.0

    def __post_init__(self):
        if not self.directory:
            raise ValueError("RequestLogConfig.directory must name a folder")
        if not 0.0 < float(self.sampling_rate) <= 1.0:
            raise ValueError(f"the request-log sampling rate must be in (0, 1]; got {self.sampling_rate!r}")
        if int(self.max_file_bytes) < 1 or not float(self.max_file_age_s) > 0:
            raise ValueError("RequestLogConfig.max_file_bytes must be >= 1 and max_file_age_s > 0")


@dataclass(frozen=True)
class ServerConfig:
    """The local TF Serving stand-in: what it serves, where, and how it watches for new versions."""

    model_base_path: str
    model_name: str = DEFAULT_MODEL_NAME
    host: str = "0.0.0.0"
    #: 0 picks a free port (tests); the bound port is reported by the server.
    port: int = DEFAULT_GRPC_PORT
    #: None: no REST port.
    rest_port: Optional[int] = None
    #: Seconds between scans of the base directory (TF Serving: --file_system_poll_wait_seconds).
    poll_interval_s: float = 1.0
    #: Largest request the server accepts (bigger ones get RESOURCE_EXHAUSTED) and response it sends.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: gRPC worker threads (concurrent requests being served).
    max_workers: int = 8
    #: Run one request through a new version before it is switched to.
    warmup: bool = True
    #: Seconds in-flight requests get to finish on shutdown.
    shutdown_grace_s: float = 5.0
    tls: Optional[TLSConfig] = None
    #: Images per request, pixels per image and per request, and requests decoding at once.
    limits: RequestLimits = field(default_factory=RequestLimits)
    #: gRPC requests that may wait for a worker thread; more get RESOURCE_EXHAUSTED at once.
    max_queued_rpcs: int = 32
    #: REST connections open at once; more are answered 503 and closed.
    max_rest_connections: int = 16
    #: Seconds the REST port waits for the next bytes of a request (headers or body) before giving up (408).
    rest_read_timeout_s: float = 30.0
    #: Longest wait between retries of a version that failed to load (the wait doubles from
    #: ``poll_interval_s``); a version whose files change is retried at the next scan.
    load_retry_max_s: float = 60.0
    #: None: no request log; else sampled Predict calls (gRPC and REST) are logged as PredictionLogs.
    request_log: Optional[RequestLogConfig] = None
