"""A local, development/test stand-in for TF Serving that speaks its gRPC API (and REST routes).

Production serves the Pusher's base directory with TF Serving itself (the ``tensorflow/serving``
image: gRPC 8500, REST 8501, ``MODEL_BASE_PATH`` / ``MODEL_NAME``). ``tensorflow_model_server``
cannot be installed on the development machines, so this server registers the generated servicers
of ``tensorflow-serving-api`` (PredictionService: Predict, Classify, GetModelMetadata;
ModelService: GetModelStatus) on a gRPC server in front of ``tf.saved_model.load``. The same client
works against both, unchanged.

Behaviour kept from TF Serving: the newest integer version of the base directory is served; the
directory is polled and a new version is loaded and warmed (``assets.extra`` warm-up requests if
present) before an atomic switch, the old one answering until then; NOT_FOUND for an unknown model
or version, FAILED_PRECONDITION for an unknown signature, INVALID_ARGUMENT for a wrong input name,
dtype or shape and for TensorFlow's own InvalidArgument (an undecodable image),
RESOURCE_EXHAUSTED over the message-size limit. Added: every bound on what a client controls
(``ServerConfig.limits``: images per request, declared pixels per image and per request read from
the image headers before decoding, requests decoding at once; queued RPCs), see ``limits``.
Request logging as TF Serving's ``logging_config`` (``ServerConfig.request_log``): sampled Predict
calls, gRPC and REST, as PredictionLog TFRecords (``request_log``).
Not kept: server-side batching, model config files, several models, version labels, monitoring.
Do not use it in production.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from typing import Callable, Optional

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from spanet.serving import inference
from spanet.serving.config import ServerConfig
from spanet.serving.errors import ServingError
from spanet.serving.limits import RequestGuard
from spanet.serving.model_manager import ModelManager
from spanet.serving.request_log import RequestLogger
from spanet.serving.warmup import warm_up

log = logging.getLogger("spanet.serving")

REGRESS_METHOD = "tensorflow/serving/regress"


def _handle(work: Callable[[], object], context: grpc.ServicerContext, rpc: str):
    """Run one RPC; a ServingError becomes its status, anything else INTERNAL (and the server goes on)."""
    try:
        return work()
    except ServingError as exc:
        context.abort(exc.code, exc.message)
    except Exception as exc:
        log.exception("%s failed", rpc)
        context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService over the manager's served version (Regress / MultiInference: not for this model)."""

    def __init__(self, manager: ModelManager, guard: RequestGuard, request_log: Optional[RequestLogger] = None):
        self.manager = manager
        self.guard = guard
        self.request_log = request_log

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:  # noqa: N802
        return _handle(
            lambda: inference.predict(self.manager, request, self.guard, context.time_remaining(), self.request_log),
            context,
            "Predict",
        )

    def Classify(self, request: classification_pb2.ClassificationRequest, context: grpc.ServicerContext):  # noqa: N802
        return _handle(
            lambda: inference.classify(self.manager, request, self.guard, context.time_remaining()), context, "Classify"
        )

    def Regress(self, request: regression_pb2.RegressionRequest, context: grpc.ServicerContext):  # noqa: N802
        def work():
            servable = self.manager.get(request.model_spec.name, inference.requested_version(request.model_spec))
            name, signature = inference.find_signature(servable, request.model_spec.signature_name)
            if signature.method_name != REGRESS_METHOD:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Expected regression signature method_name to be {REGRESS_METHOD}. Was: {signature.method_name}",
                )
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "Regress is not implemented by the local server")

        return _handle(work, context, "Regress")

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext):  # noqa: N802
        return _handle(lambda: inference.model_metadata(self.manager, request), context, "GetModelMetadata")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService: GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED, one model from flags only)."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext):  # noqa: N802
        return _handle(lambda: inference.model_status(self.manager, request), context, "GetModelStatus")


class LocalServer:
    """The local TF Serving stand-in: model manager + gRPC server (+ optional REST port).

    ``start()`` loads the newest version (if any), binds the ports (``port`` / ``rest_port``
    then hold the bound numbers, useful with port 0) and starts watching the base directory.
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.manager = ModelManager(
            config.model_name,
            config.model_base_path,
            config.poll_interval_s,
            warm_up if config.warmup else None,
            retry_max_interval_s=config.load_retry_max_s,
        )
        self.guard = RequestGuard(config.limits)
        #: Sampled Predict calls (gRPC and REST) as PredictionLogs, when ``config.request_log`` is set.
        self.request_log: Optional[RequestLogger] = None
        self.port: Optional[int] = None
        self.rest_port: Optional[int] = None
        self._grpc: Optional[grpc.Server] = None
        self._rest = None

    def start(self) -> "LocalServer":
        config = self.config
        if config.request_log is not None:
            self.request_log = RequestLogger(config.request_log)
        self.manager.start()
        limit = config.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=config.max_workers + config.max_queued_rpcs,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager, self.guard, self.request_log), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager), server)
        address = f"{config.host}:{config.port}"
        try:
            if config.tls is not None:
                root, key, chain = config.tls.read()
                if not (key and chain):
                    raise ValueError("server TLS needs both a certificate chain and a private key")
                credentials = grpc.ssl_server_credentials(
                    [(key, chain)], root_certificates=root, require_client_auth=root is not None
                )
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            port, reason = 0, exc
        else:
            reason = "is it in use?"
        if not port:
            self.manager.stop()
            raise OSError(f"cannot listen on {address} ({reason})")
        server.start()
        self._grpc, self.port = server, port
        if config.rest_port is not None:
            from spanet.serving.rest import RestServer

            self._rest = RestServer(
                self.manager,
                config.host,
                config.rest_port,
                limit,
                guard=self.guard,
                read_timeout_s=config.rest_read_timeout_s,
                max_connections=config.max_rest_connections,
                request_log=self.request_log,
            ).start()
            self.rest_port = self._rest.port
        log.info(
            "serving model %r from %s on gRPC %s:%d%s (local TF Serving stand-in; production uses TF Serving)",
            config.model_name,
            self.manager.base_path,
            config.host,
            port,
            f", REST port {self.rest_port}" if self.rest_port is not None else "",
        )
        return self

    def stop(self, grace_s: Optional[float] = None) -> None:
        """Stop accepting requests, let in-flight ones finish within the grace period, stop watching."""
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
            self._grpc = None
        self.manager.stop()
        if self.request_log is not None:
            self.request_log.close()  # the open log file gets its final name

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace_s=0.5)


def serve_forever(config: ServerConfig) -> int:
    """Run the local server until SIGTERM or SIGINT, then shut down gracefully; returns 0."""
    stop = threading.Event()
    server = LocalServer(config).start()
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    try:
        while not stop.wait(0.5):
            pass
        log.info("shutting down (grace %.1f s)", config.shutdown_grace_s)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
