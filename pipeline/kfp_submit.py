"""Uploads a compiled pipeline spec to a Kubeflow Pipelines host and starts a run.

``kfp.Client(...).create_run_from_pipeline_package(...)`` does the work. This module adds what a
command line needs around it: the spec is checked locally first, the host is asked once for its
health (the stock client retries five times, five seconds apart), every request has a deadline,
and whatever goes wrong (unreachable host, refused credentials, a spec the server rejects, a
server error, a login page instead of the API) becomes a :class:`SubmitError` with one line.
A run's arguments (``--param KEY=VALUE``) are checked against the spec's run-time parameters
(``root.inputDefinitions.parameters``) and typed as it declares them before anything is sent.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

#: Environment variables read when the options are not given (the first is kfp's own).
HOST_ENV = "KF_PIPELINES_ENDPOINT"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
UI_HOST_ENV = "KF_PIPELINES_UI_ENDPOINT"


class SubmitError(Exception):
    """A submission failed; ``str(error)`` is one line saying what is wrong."""


class ParameterError(ValueError):
    """A run argument the spec does not declare, or of the wrong type; ``str(error)`` is one line naming it."""


@dataclass(frozen=True)
class SubmitRequest:
    """What to submit, where, and as whom."""

    package_path: str
    host: str
    experiment: str = "spanet"
    run_name: Optional[str] = None
    namespace: Optional[str] = None
    auth_token: Optional[str] = None
    pipeline_root: Optional[str] = None
    ui_host: Optional[str] = None
    timeout_seconds: float = 60.0
    #: The run's arguments: run-time parameter name -> value (typed as the spec declares it).
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    run_url: str
    experiment_id: str


def load_package(path: str):
    """The package as kfp's client reads it (pipeline spec + platform spec); SubmitError if it cannot."""
    from google.protobuf import json_format
    from kfp.client import client as kfp_client

    if not os.path.isfile(path):
        raise SubmitError(f"pipeline package {path} does not exist (compile it with --output first)")
    try:
        document = kfp_client._extract_pipeline_yaml(path)  # the loader create_run_from_pipeline_package uses
    except (ValueError, TypeError, AttributeError, json_format.ParseError) as error:
        raise SubmitError(f"{path} is not a KFP pipeline spec: {_one_line(error)}") from None
    except Exception as error:  # yaml errors and the like
        raise SubmitError(f"{path} is not a KFP pipeline spec: {type(error).__name__}: {_one_line(error)}") from None
    if not document.pipeline_spec.pipeline_info.name or not document.pipeline_spec.root.dag.tasks:
        raise SubmitError(f"{path} is not a KFP pipeline spec: it has no pipeline name or no tasks")
    return document


def runtime_parameters(document: Any) -> Dict[str, Any]:
    """The spec's run-time parameters (its root inputs), by name: their ``ParameterSpec`` protos."""
    return dict(document.pipeline_spec.root.input_definitions.parameters)


def _parse_number(text: str, kind: type) -> Any:
    value = kind(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def _parse_boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


def _parse_json(text: str, kind: type) -> Any:
    value = json.loads(text)
    if not isinstance(value, kind):
        raise ValueError(text)
    return value


def _typed(name: str, text: str, parameter: Any) -> Any:
    """``text`` as the value of a parameter of the spec's declared type; ParameterError if it is not one."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    kinds = pipeline_spec_pb2.ParameterType
    parsers = {
        kinds.STRING: ("a string", str),
        kinds.NUMBER_INTEGER: ("an integer", lambda t: _parse_number(t, int)),
        kinds.NUMBER_DOUBLE: ("a number", lambda t: _parse_number(t, float)),
        kinds.BOOLEAN: ("a boolean (true or false)", _parse_boolean),
        kinds.LIST: ("a JSON list", lambda t: _parse_json(t, list)),
        kinds.STRUCT: ("a JSON object", lambda t: _parse_json(t, dict)),
    }
    kind = parameter.parameter_type
    if kind not in parsers:
        type_name = kinds.ParameterTypeEnum.Name(kind)
        raise ParameterError(f"--param {name}: the spec's parameter type {type_name} is not supported")
    label, parse = parsers[kind]
    try:
        return parse(text)
    except ValueError:
        raise ParameterError(f"--param {name}={text!r}: not {label}, as the spec declares it") from None


def run_arguments(document: Any, pairs: Sequence[str]) -> Dict[str, Any]:
    """The run's arguments from ``KEY=VALUE`` texts, typed as the spec declares each; ParameterError names
    an unknown key, a repeated one or a value of the wrong type."""
    declared = runtime_parameters(document)
    arguments: Dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"--param {pair!r} must be KEY=VALUE")
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ParameterError(f"--param {name}: not a run-time parameter of the pipeline (it has: {known})")
        if name in arguments:
            raise ParameterError(f"--param {name} is given twice")
        arguments[name] = _typed(name, text, declared[name])
    return arguments


def run_url(ui_host: str, run_id: str) -> str:
    """The run's page in the Kubeflow Pipelines UI."""
    prefix = ui_host.rstrip("/")
    if not prefix.startswith(("http://", "https://")):
        prefix = "https://" + prefix
    return f"{prefix}/#/runs/details/{run_id}"


def describe_error(error: BaseException, host: str) -> str:
    """One line naming what went wrong talking to ``host``."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    if isinstance(error, ApiException):
        status = int(error.status or 0)
        detail = _server_message(error.body) or (error.reason or "")
        if status == 0:
            return f"cannot talk to Kubeflow Pipelines at {host}: {_one_line(detail) or 'connection failed'}"
        if status in (401, 403):
            what = "unauthorised" if status == 401 else "forbidden"
            return (
                f"Kubeflow Pipelines at {host} refused the request as {what} "
                f"(HTTP {status}{': ' + detail if detail else ''}); "
                f"pass a valid --auth-token (or set {TOKEN_ENV}) and check --namespace"
            )
        if status == 404:
            return (
                f"Kubeflow Pipelines at {host} has no such API or object (HTTP 404{': ' + detail if detail else ''}); "
                "is the host the KFP v2 API endpoint?"
            )
        if 400 <= status < 500:
            return f"Kubeflow Pipelines at {host} rejected the pipeline (HTTP {status}): {detail or 'bad request'}"
        return f"Kubeflow Pipelines at {host} failed with a server error (HTTP {status}): {detail or 'no details'}"
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        reason = error.reason
        # NewConnectionError subclasses ConnectTimeoutError in urllib3: test it first.
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            cause = "connection refused" if "refused" in str(reason).lower() else _short(reason)
            return f"cannot reach Kubeflow Pipelines at {host}: {cause}"
        if isinstance(reason, (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError)):
            return f"Kubeflow Pipelines at {host} did not answer in time ({_short(reason)})"
        return f"cannot reach Kubeflow Pipelines at {host}: {_short(reason)}"
    if isinstance(error, (urllib3.exceptions.HTTPError, OSError)):
        return f"cannot reach Kubeflow Pipelines at {host}: {_short(error)}"
    return f"submitting to Kubeflow Pipelines at {host} failed: {type(error).__name__}: {_one_line(error)}"


def submit(request: SubmitRequest) -> SubmitResult:
    """Creates (or reuses) the experiment and starts a run of the package; SubmitError on failure
    (ParameterError, before any request, for an argument the spec does not declare or of another type)."""
    document = load_package(request.package_path)
    declared = runtime_parameters(document)
    for name, value in request.arguments.items():
        if name not in declared:
            raise ParameterError(f"argument {name}: not a run-time parameter of the pipeline ({', '.join(declared)})")
        _typed(name, json.dumps(value) if not isinstance(value, str) else value, declared[name])
    if not request.host:
        raise SubmitError(f"no Kubeflow Pipelines host: pass --host URL or set {HOST_ENV}")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(request.timeout_seconds)  # urllib3's default timeout is the socket default
    chatter = io.StringIO()
    urllib3_log = logging.getLogger("urllib3")
    previous_level = urllib3_log.level
    urllib3_log.setLevel(logging.ERROR)  # its "Retrying ..." warnings would precede our one line
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            client = _client(request)
            _check_health(client, request.host)
            result = client.create_run_from_pipeline_package(
                request.package_path,
                arguments=dict(request.arguments),
                run_name=request.run_name,
                experiment_name=request.experiment,
                namespace=request.namespace,
                pipeline_root=request.pipeline_root,
            )
    except SubmitError:
        raise
    except Exception as error:  # every other failure is reported as one line
        raise SubmitError(describe_error(error, request.host)) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
        urllib3_log.setLevel(previous_level)
    run_id = getattr(result, "run_id", None)
    if not run_id:
        raise SubmitError(f"Kubeflow Pipelines at {request.host} accepted the run but returned no run id")
    run_info = getattr(result, "run_info", None)
    return SubmitResult(
        run_id=run_id,
        run_url=run_url(request.ui_host or os.environ.get(UI_HOST_ENV) or request.host, run_id),
        experiment_id=str(getattr(run_info, "experiment_id", "") or ""),
    )


def _client(request: SubmitRequest):
    """A kfp.Client whose health check asks once instead of five times in 25 seconds."""
    import kfp

    class _OneShotHealthClient(kfp.Client):
        def get_kfp_healthz(self, sleep_duration: int = 5):
            return self._healthz_api.get_healthz()

    kwargs: Dict[str, Any] = {"host": request.host, "existing_token": request.auth_token or None}
    if request.namespace:
        kwargs["namespace"] = request.namespace
    return _OneShotHealthClient(**kwargs)


def _check_health(client, host: str) -> None:
    health = client.get_kfp_healthz()
    fields = ("commit_sha", "tag_name", "multi_user")
    if not any(getattr(health, name, None) is not None for name in fields):
        raise SubmitError(
            f"{host} answered, but not as the Kubeflow Pipelines API (a login page or a proxy?); "
            "use the API endpoint (e.g. a port-forward of svc/ml-pipeline-ui) and --auth-token"
        )


def _server_message(body: Any) -> str:
    """The message of a KFP error body (``{"message": ...}`` / ``{"error_message": ...}``), one line."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text)[:200] if not text.lstrip().startswith("<") else ""
    if isinstance(data, dict):
        for key in ("message", "error_message", "error"):
            if data.get(key):
                return _one_line(data[key])[:300]
    return _one_line(text)[:200]


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def _short(error: Any) -> str:
    """The tail of a urllib3 error (``...: [Errno 111] Connection refused``)."""
    text = _one_line(error)
    return text.rsplit(": ", 1)[-1] if ": " in text else text
