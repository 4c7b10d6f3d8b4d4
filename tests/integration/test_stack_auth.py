"""The local stack's `secure` mode authenticates for real: a real MLflow server with basic auth
and a real Airflow api-server with SimpleAuthManager users refuse anonymous requests and accept
the stack's users (through the same clients the CLI uses)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ml import tracking
from ml.dev.airflow_api import AirflowAPIError, AirflowClient
from ml.dev.stack import auth, bootstrap, lifecycle, processes
from ml.settings import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def secure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mlpipe-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mlpipe-test-secret")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(
        _env_file=None,
        S3_ENDPOINT_URL=f"http://127.0.0.1:{_free_port()}",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{_free_port()}",
        DASK_SCHEDULER_ADDRESS=f"tcp://127.0.0.1:{_free_port()}",
        AWS_ACCESS_KEY_ID="mlpipe-test",
        AWS_SECRET_ACCESS_KEY="mlpipe-test-secret",
        airflow_api_url=f"http://127.0.0.1:{_free_port()}",
        state_dir=tmp_path / "state",
        mlflow_database_url=None,
        airflow_database_url=None,
        secure=True,
        mlflow_admin_password="an-admin-password-for-tests",
    )
    yield s
    lifecycle.down(s)


def test_mlflow_basic_auth_refuses_anonymous_and_accepts_the_admin(secure):
    lifecycle.up(secure, ["s3", "mlflow"], timeout=180)
    api = secure.mlflow_tracking_uri + "/api/2.0/mlflow/experiments/search"
    body = {"max_results": 5}
    assert requests.post(api, json=body, timeout=10).status_code == 401
    wrong = requests.post(api, json=body, auth=("admin", "not-the-password"), timeout=10)
    assert wrong.status_code == 401
    ok = requests.post(api, json=body, auth=("admin", "an-admin-password-for-tests"), timeout=10)
    assert ok.status_code == 200, ok.text
    # what the stack hands its processes (and client_env hands the CLI) is accepted too
    env = auth.client_env(secure)
    creds = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    assert requests.post(api, json=body, auth=creds, timeout=10).status_code == 200


def _attempt(action) -> int:
    """200 when `action` goes through, else the HTTP status MLflow refused it with."""
    from mlflow.exceptions import MlflowException, RestException

    try:
        action()
    except RestException as exc:
        return exc.get_http_status_code()
    except MlflowException as exc:  # a body that is not JSON ("Permission denied")
        found = re.search(r"error code (\d+)", str(exc))
        if found is None:
            raise
        return int(found.group(1))
    return 200


def test_each_stage_writes_to_mlflow_only_what_it_must(secure):
    """The users `up` makes (infra/mlflow/create_users.py, as compose's mlflow-init): train
    registers, promote moves aliases, everything else reads. The same `up` twice changes
    nothing (a kept state folder starts again)."""
    lifecycle.up(secure, ["s3", "mlflow"], timeout=180)
    again = auth.provision_mlflow_users(secure)
    assert "user mlpipe-promote: role mlpipe-promote" in again
    client = tracking.client(settings=secure)
    conns = {
        k.removeprefix("AIRFLOW_CONN_MLPIPE_MLFLOW_").lower(): json.loads(v)
        for k, v in auth.mlflow_connection_env(secure).items()
    }

    def as_stage(stage):
        if stage in conns:
            return tracking.environ(
                tracking.credentials_env(conns[stage]["login"], conns[stage]["password"])
            )
        return tracking.environ(auth.mlflow_process_env(secure))  # the reader

    with as_stage("train"):
        experiment = client.create_experiment("flights")
        run = client.create_run(experiment).info.run_id
        client.create_registered_model("flights")
        version = client.create_model_version("flights", "s3://mlflow/m", run_id=run).version
        client.set_registered_model_alias("flights", "challenger", version)
    with as_stage("promote"):
        assert (
            _attempt(lambda: client.set_registered_model_alias("flights", "champion", version))
            == 200
        )
        assert (
            _attempt(lambda: client.delete_registered_model_alias("flights", "challenger")) == 200
        )
        assert _attempt(lambda: client.set_model_version_tag("flights", version, "p", "1")) == 200
        assert _attempt(lambda: client.create_run(experiment)) == 403
    for stage in ("score", "validate", "preprocess", "ingest"):
        with as_stage(stage):
            assert client.get_model_version_by_alias("flights", "champion").version == version
            assert client.get_run(run).info.run_id == run
            for refused in (
                lambda: client.set_registered_model_alias("flights", "champion", version),
                lambda: client.delete_registered_model_alias("flights", "champion"),
                lambda: client.create_model_version("flights", "s3://x/evil", run_id=run),
                lambda: client.set_model_version_tag("flights", version, "p", "2"),
                lambda: client.create_run(experiment),
                lambda: client.delete_registered_model("flights"),
            ):
                assert _attempt(refused) == 403, stage
    # A model nobody registered yet has no champion (not "registry unavailable"), although
    # basic auth answers the reader's alias read of it with 403; a real model's alias reads.
    # In a process of its own: the library points MLflow at the server process-wide.
    code = (
        "from ml.model_versions import alias_version as a; "
        "print(a('never_registered', 'champion'), a('flights', 'champion'))"
    )
    env = {
        **os.environ,
        **auth.mlflow_process_env(secure),  # the reader, as every read-only stage
        "MLFLOW_TRACKING_URI": secure.mlflow_tracking_uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    read = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.split() == ["None", version]
    with tracking.environ(auth.client_env(secure)):  # the admin sees what stayed
        model = client.get_registered_model("flights")
        assert model.aliases == {"champion": version}
        assert [v.version for v in client.search_model_versions("name='flights'")] == [version]


def _wait_api(s: Settings, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    url = s.airflow_api_url + "/api/v2/monitor/health"
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise processes.fail(s, "airflow-api-server", "did not answer in time")
        time.sleep(1)


def test_airflow_users_need_a_password_and_roles_hold(secure):
    migrate = bootstrap.start_migrate(secure)
    bootstrap.finish_migrate(secure, migrate, time.monotonic() + 300)
    processes.ensure_started(secure, "airflow-api-server")
    _wait_api(secure)
    base = secure.airflow_api_url

    # no all-admins: an anonymous token and anonymous API calls are refused
    assert requests.get(base + "/auth/token", timeout=10).status_code >= 400
    assert requests.get(base + "/api/v2/pools", timeout=10).status_code == 401
    with pytest.raises(AirflowAPIError, match="MLPIPE_AIRFLOW_USERNAME"):
        AirflowClient(base).request("GET", "/pools")
    with pytest.raises(AirflowAPIError, match="-> 401"):
        AirflowClient(base, "admin", "wrong-password").request("GET", "/pools")

    # the admin (as the CLI gets it) writes; a viewer reads and may not write
    admin = auth.airflow_client(secure)
    bootstrap.ensure_promotion_pool(secure)
    names = {p["name"] for p in admin.request("GET", "/pools")["pools"]}
    assert "promotion" in names
    viewer = AirflowClient(base, "viewer", auth.airflow_passwords(secure)["viewer"])
    assert viewer.request("GET", "/pools/promotion")["slots"] == 1
    with pytest.raises(AirflowAPIError, match="-> 403"):
        viewer.request("PATCH", "/pools/promotion", json={"name": "promotion", "slots": 5})

    # a token the server no longer accepts (403 "Invalid JWT token") is renewed once
    admin.session.headers["Authorization"] = "Bearer not-a-token"
    assert admin.request("GET", "/pools/promotion")["name"] == "promotion"
