"""Errors that carry a gRPC status code, raised where TF Serving would answer with that code."""

import grpc


class ServingError(Exception):
    """A request failure with TF Serving's status code and message (sent back as the RPC status)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def status_code_from_tf(error_code: int) -> grpc.StatusCode:
    """TensorFlow's error codes are gRPC's numbers: map one (e.g. from tf.errors.OpError) to grpc.StatusCode."""
    for code in grpc.StatusCode:
        if code.value[0] == error_code:
            return code
    return grpc.StatusCode.UNKNOWN
