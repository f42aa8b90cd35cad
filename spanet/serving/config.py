"""Every serving setting in one typed place: the server's, the client's and their shared limits.

TF Serving defaults are mirrored where one exists (ports 8500/8501, signature ``serving_default``,
the base directory polled for new versions); limits that matter for image batches (gRPC's 4 MiB
default message size) are raised.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

#: gRPC's default message limit is 4 MiB: too small for a batch of images.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_SIGNATURE = "serving_default"
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501


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
        return load(self.root_certs, "root certificates"), load(self.private_key, "private key"), load(self.cert_chain, "certificate chain")


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
    model_name: str = "spanet"
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
class ServerConfig:
    """The local TF Serving stand-in: what it serves, where, and how it watches for new versions."""

    model_base_path: str
    model_name: str = "spanet"
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
