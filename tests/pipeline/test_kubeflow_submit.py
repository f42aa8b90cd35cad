"""--submit against a stand-in Kubeflow Pipelines API on 127.0.0.1 (stdlib http.server in a thread):
a run is created with the compiled spec and its URL printed; an unreachable host, refused credentials,
a rejected spec, a server error and a login page each end in one clear line and exit code 1."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


import pytest
import yaml

HEALTH = {"commit_sha": "0123abc", "tag_name": "2.0.5", "multi_user": False}


class FakeKfp(BaseHTTPRequestHandler):
    """The few v2beta1 endpoints kfp.Client uses; ``server.mode`` picks the behaviour."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, payload, content_type="application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        self.server.requests.append(
            {"method": method, "path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        mode, path = self.server.mode, self.path.split("?")[0]
        if mode == "401":
            return self._send(401, {"error": "Unauthorized: missing bearer token", "code": 16})
        if mode == "500":
            return self._send(500, {"error": "database is locked", "message": "database is locked", "code": 13})
        if mode == "login":
            return self._send(200, b"<html><body>Log in to Kubeflow</body></html>", "text/html")
        if path == "/apis/v2beta1/healthz":
            return self._send(200, HEALTH)
        if path == "/apis/v2beta1/experiments" and method == "GET":
            return self._send(200, {})  # no experiment of that name yet
        if path == "/apis/v2beta1/experiments" and method == "POST":
            return self._send(200, {"experiment_id": "exp-7", "display_name": body["display_name"]})
        if path == "/apis/v2beta1/runs" and method == "POST":
            if mode == "reject":
                return self._send(
                    400, {"code": 3, "message": "Failed to create a run: invalid pipeline spec: unknown executor"}
                )
            return self._send(
                200, {"run_id": "run-42", "experiment_id": body["experiment_id"], "display_name": body["display_name"]}
            )
        return self._send(404, {"message": f"no route {method} {path}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


@pytest.fixture(scope="module")
def kfp_host():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    server.mode, server.requests = "ok", []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def host(kfp_host):
    kfp_host.mode, kfp_host.requests[:] = "ok", []
    return kfp_host


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A compiled spec with a platform section (GPU Trainer on labelled nodes)."""
    from pipeline.cluster import KubeflowConfig, Toleration
    from pipeline.config import PipelineConfig
    from pipeline.kubeflow import compile_pipeline

    path = tmp_path_factory.mktemp("package") / "spanet.yaml"
    config = PipelineConfig(
        pipeline_root_override="gs://b/root",
        data_path="gs://b/wafers",
        serving_base_dir="gs://b/serving/spanet",
        class_names=("none", "Scratch"),
    )
    kubeflow = KubeflowConfig(
        image="spanet:test",
        trainer_gpus=1,
        node_selector=(("pool", "gpu"),),
        tolerations=(Toleration("nvidia.com/gpu"),),
    )
    compile_pipeline(config, kubeflow, str(path))
    return path


def _url(server):
    return f"http://127.0.0.1:{server.server_address[1]}"


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again on exit: nothing listens there


def test_submit_through_the_command_line_starts_a_run_and_prints_its_url(host, tmp_path, capsys, monkeypatch):
    from pipeline.run_kubeflow import main

    monkeypatch.setenv("KF_PIPELINES_TOKEN", "secret-token")
    monkeypatch.delenv("KF_PIPELINES_UI_ENDPOINT", raising=False)
    out = tmp_path / "spanet.yaml"
    code = main(
        [
            "--output",
            str(out),
            "--image",
            "spanet:test",
            "--pipeline-root",
            "gs://b/root",
            "--data",
            "gs://b/w",
            "--classes",
            "none,Scratch",
            "--serving-dir",
            "gs://b/s",
            "--gpus",
            "1",
            "--node-selector",
            "pool=gpu",
            "--submit",
            "--host",
            _url(host),
            "--experiment",
            "wafer-runs",
            "--run-name",
            "nightly",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip().splitlines()[-1] == f"Run started: {_url(host)}/#/runs/details/run-42"

    posted = {(r["method"], r["path"].split("?")[0]): r for r in host.requests}
    assert posted[("POST", "/apis/v2beta1/experiments")]["body"]["display_name"] == "wafer-runs"
    run = posted[("POST", "/apis/v2beta1/runs")]
    assert run["auth"] == "Bearer secret-token"
    assert run["body"]["display_name"] == "nightly" and run["body"]["experiment_id"] == "exp-7"
    assert run["body"]["runtime_config"]["pipeline_root"] == "gs://b/root"
    spec, platform = yaml.safe_load_all(out.read_text())
    assert run["body"]["pipeline_spec"]["pipeline_spec"] == spec
    assert run["body"]["pipeline_spec"]["platform_spec"] == platform


def _submit_error(package, host_url, **changes):
    from pipeline.kfp_submit import SubmitError, SubmitRequest, submit

    request = SubmitRequest(package_path=str(package), host=host_url, timeout_seconds=10, **changes)
    with pytest.raises(SubmitError) as info:
        submit(request)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_unreachable_host(package):
    url = f"http://127.0.0.1:{_closed_port()}"
    assert _submit_error(package, url) == f"cannot reach Kubeflow Pipelines at {url}: connection refused"


def test_refused_credentials(host, package):
    host.mode = "401"
    message = _submit_error(package, _url(host), auth_token="stale")
    assert message.startswith(f"Kubeflow Pipelines at {_url(host)} refused the request as unauthorised (HTTP 401")
    assert "Unauthorized: missing bearer token" in message and "--auth-token" in message
    assert len(host.requests) == 1  # asked once, no retry loop


def test_server_error(host, package):
    host.mode = "500"
    assert _submit_error(package, _url(host)) == (
        f"Kubeflow Pipelines at {_url(host)} failed with a server error (HTTP 500): database is locked"
    )


def test_spec_rejected_by_the_server(host, package):
    host.mode = "reject"
    assert _submit_error(package, _url(host)) == (
        f"Kubeflow Pipelines at {_url(host)} rejected the pipeline (HTTP 400): "
        "Failed to create a run: invalid pipeline spec: unknown executor"
    )


def test_a_login_page_instead_of_the_api(host, package):
    host.mode = "login"
    assert "answered, but not as the Kubeflow Pipelines API" in _submit_error(package, _url(host))


def test_a_file_that_is_not_a_spec_is_refused_before_any_request(host, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelineInfo: {name: x}\nroot: {dag: {tasks: {}}}\nnot_a_field: 1\n")
    assert _submit_error(bad, _url(host)).startswith(f"{bad} is not a KFP pipeline spec: ")
    assert _submit_error(tmp_path / "missing.yaml", _url(host)) == (
        f"pipeline package {tmp_path / 'missing.yaml'} does not exist (compile it with --output first)"
    )
    assert host.requests == []


def test_errors_reach_the_command_line_as_one_line_and_exit_1(package, capsys):
    from pipeline import run_kubeflow

    url = f"http://127.0.0.1:{_closed_port()}"
    code = run_kubeflow.main(["--output", str(package), "--pipeline-root", "gs://b/root", "--submit", "--host", url])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == f"run_kubeflow.py: cannot reach Kubeflow Pipelines at {url}: connection refused"
    assert not any("Traceback" in line for line in err)


def _cli(host, tmp_path, *extra):
    return [
        "--output",
        str(tmp_path / "spanet.yaml"),
        "--image",
        "spanet:test",
        "--pipeline-root",
        "gs://b/root",
        "--data",
        "gs://b/w",
        "--classes",
        "none,Scratch",
        "--serving-dir",
        "gs://b/s",
        "--submit",
        "--host",
        _url(host),
        *extra,
    ]


def test_run_time_parameters_reach_the_run_as_typed_arguments(host, tmp_path, capsys):
    from pipeline.run_kubeflow import main

    params = ["--param", "epochs=3", "--param", "min_defect_recall=0.95", "--param", "data_path=gs://b/other"]
    code = main(_cli(host, tmp_path, *params))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "arguments epochs=3, min_defect_recall=0.95, data_path='gs://b/other'" in captured.out
    run = {(r["method"], r["path"].split("?")[0]): r for r in host.requests}[("POST", "/apis/v2beta1/runs")]
    assert run["body"]["runtime_config"]["parameters"] == {
        "epochs": 3,
        "min_defect_recall": 0.95,
        "data_path": "gs://b/other",
    }
    # the parameters the run names are the spec's root inputs, which the uploaded spec declares
    uploaded = run["body"]["pipeline_spec"]  # the spec itself (no platform section in this package)
    declared = uploaded["root"]["inputDefinitions"]["parameters"]
    assert set(declared) == set(run["body"]["runtime_config"]["parameters"])


def test_without_params_the_run_takes_the_compiled_defaults(host, tmp_path, capsys):
    from pipeline.run_kubeflow import main

    assert main(_cli(host, tmp_path)) == 0, capsys.readouterr().err
    run = {(r["method"], r["path"].split("?")[0]): r for r in host.requests}[("POST", "/apis/v2beta1/runs")]
    assert not run["body"]["runtime_config"].get("parameters")


@pytest.mark.parametrize(
    "param, message",
    [
        ("epoch=3", "--param epoch: not a run-time parameter of the pipeline (it has: data_path, epochs, "),
        ("epochs=three", "--param epochs='three': not an integer, as the spec declares it"),
        ("epochs=2.5", "--param epochs='2.5': not an integer"),
        ("min_defect_recall=high", "--param min_defect_recall='high': not a number"),
        ("min_defect_recall=1.5", "--param min_defect_recall=1.5: min_defect_recall must be in [0, 1]"),
        ("epochs=0", "--param epochs=0: epochs must be an integer >= 1"),
        ("epochs", "--param 'epochs' must be KEY=VALUE"),
    ],
)
def test_a_bad_param_is_one_line_and_exit_2_before_any_upload(param, message, host, tmp_path, capsys):
    from pipeline.run_kubeflow import main

    assert main(_cli(host, tmp_path, "--param", param)) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "note:" not in line]
    assert len(err) == 1 and message in err[0], err
    assert not any(r["method"] == "POST" for r in host.requests)  # nothing uploaded, no run


def test_param_without_submit_is_refused(tmp_path, capsys):
    from pipeline.run_kubeflow import main

    assert main(["--output", str(tmp_path / "p.yaml"), "--param", "epochs=3"]) == 2
    assert "--param sets an argument of a run: it needs --submit" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()


def test_submit_checks_the_arguments_against_the_spec_itself(host, package):
    from pipeline.kfp_submit import ParameterError, SubmitRequest, submit

    with pytest.raises(ParameterError, match="argument width: not a run-time parameter"):
        submit(SubmitRequest(package_path=str(package), host=_url(host), arguments={"width": 1.0}))
    with pytest.raises(ParameterError, match="epochs='3.5': not an integer"):
        submit(SubmitRequest(package_path=str(package), host=_url(host), arguments={"epochs": 3.5}))
    assert host.requests == []
