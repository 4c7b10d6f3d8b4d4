"""Secure mode's Airflow users and MLflow auth: what the stack's processes are started with."""

from __future__ import annotations

import json
import stat

import pytest
from pydantic import SecretStr

from ml.dev.stack import auth, services

pytestmark = pytest.mark.unit


def test_without_secure_mode_everyone_is_admin_and_mlflow_is_open(settings):
    env = services.airflow_env(settings)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" not in env
    spec = services.service_spec(settings, "mlflow")
    assert "basic-auth" not in spec.argv and "MLFLOW_AUTH_CONFIG_PATH" not in spec.env
    assert auth.client_env(settings) == {}


def test_secure_mode_has_users_with_roles_and_kept_passwords(settings):
    s = settings.model_copy(update={"secure": True, "airflow_password": None})
    env = services.airflow_env(s)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert (
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,operator:op,viewer:viewer"
    )
    path = auth.airflow_passwords_file(s)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = auth.airflow_passwords(s)
    assert set(first) == {"admin", "operator", "viewer"} and len(set(first.values())) == 3
    assert auth.airflow_passwords(s) == first  # generated once, then kept
    # a password from the settings wins over the generated one
    given = s.model_copy(update={"airflow_password": SecretStr("from-the-settings-123")})
    assert auth.airflow_passwords(given)["admin"] == "from-the-settings-123"
    client = auth.airflow_client(given)
    assert (client.username, client.password) == ("admin", "from-the-settings-123")


def test_secure_mode_runs_mlflow_with_basic_auth_and_hands_out_credentials(settings):
    s = settings.model_copy(update={"secure": True, "mlflow_admin_password": None})
    spec = services.service_spec(s, "mlflow")
    assert spec.argv[-2:] == ["--app-name", "basic-auth"]
    assert spec.env["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    password = spec.env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert len(password) >= 16 and spec.env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    ini = (s.state_path / "mlflow" / "basic_auth.ini").read_text()
    assert "basic_auth.db" in ini and password not in ini  # no secret in the ini file
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    assert auth.client_env(s).items() >= admin.items()  # the CLI, the stack's own set-up
    # The stack's processes read as the reader; train and promote tasks get their own users.
    reader, reader_password = auth.mlflow_user(s, "READER")
    assert reader == "mlpipe-reader" and len(reader_password) >= 16
    as_reader = {"MLFLOW_TRACKING_USERNAME": reader, "MLFLOW_TRACKING_PASSWORD": reader_password}
    airflow = services.airflow_env(s)
    assert airflow.items() >= as_reader.items()
    assert services.service_spec(s, "dask-workers").env.items() >= as_reader.items()
    conns = {
        k: json.loads(v) for k, v in airflow.items() if k.startswith("AIRFLOW_CONN_MLPIPE_MLFLOW")
    }
    assert set(conns) == {"AIRFLOW_CONN_MLPIPE_MLFLOW_TRAIN", "AIRFLOW_CONN_MLPIPE_MLFLOW_PROMOTE"}
    for stage in ("TRAIN", "PROMOTE"):
        conn = conns[f"AIRFLOW_CONN_MLPIPE_MLFLOW_{stage}"]
        assert (conn["login"], conn["password"]) == auth.mlflow_user(s, stage)
    assert len({password, reader_password, *(c["password"] for c in conns.values())}) == 4
    # a process's own MLflow credentials (compose, per-stage users) are never replaced
    own = s.model_copy(
        update={
            "mlflow_tracking_username": "reader",
            "mlflow_tracking_password": SecretStr("reader-password-1"),
        }
    )
    assert auth.mlflow_client_env(own)["MLFLOW_TRACKING_USERNAME"] == "reader"
    assert auth.mlflow_process_env(own)["MLFLOW_TRACKING_USERNAME"] == "reader"
    assert auth.mlflow_connection_env(own) == {}  # every stage then uses the settings' user
