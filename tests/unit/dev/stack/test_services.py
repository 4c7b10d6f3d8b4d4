"""Each service of the local stack has a command line, an environment and a working folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.dev.stack import layout, services

pytestmark = pytest.mark.unit


def test_every_service_has_a_spec(settings):
    for name in layout.SERVICES:
        spec = services.service_spec(settings, name)
        assert Path(spec.argv[0]).exists(), (name, spec.argv)
        assert spec.cwd.is_absolute()
    with pytest.raises(ValueError, match="unknown service 'redis'"):
        services.service_spec(settings, "redis")


def test_specs_take_their_addresses_from_the_settings(settings):
    s3 = services.service_spec(settings, "s3")
    assert s3.argv[1:] == ["-H", "127.0.0.1", "-p", "19000"]
    mlflow = services.service_spec(settings, "mlflow")
    assert mlflow.argv[1:8] == [
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "15000",
        "--workers",
        "1",
    ]
    assert "s3://mlflow/artifacts" in mlflow.argv
    assert "--allowed-hosts" not in mlflow.argv  # loopback is allowed by default
    assert mlflow.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert mlflow.cwd == settings.state_path / "mlflow"
    workers = services.service_spec(settings, "dask-workers")
    assert workers.argv[1:4] == ["worker", "tcp://127.0.0.1:18786", "--nworkers"]
    assert workers.argv[4] == "3"
    scheduler = services.service_spec(settings, "dask-scheduler")
    assert scheduler.argv[scheduler.argv.index("--port") + 1] == "18786"
    for name in layout.AIRFLOW_SERVICES:
        spec = services.service_spec(settings, name)
        assert spec.argv[1] == name.removeprefix("airflow-")
        assert spec.env["AIRFLOW__API__PORT"] == "18080"


def test_mlflow_posts_signed_webhooks_to_the_airflow_plugin(settings):
    mlflow = services.service_spec(settings, "mlflow")
    keys = services.mlflow_webhook_keys(settings)
    assert keys == services.mlflow_webhook_keys(settings)  # made once, kept
    assert mlflow.env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] == keys["encryption_key"]
    assert mlflow.env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "true"  # the receiver is on loopback
    assert "http" in mlflow.env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"].split(",")
    airflow = services.service_spec(settings, "airflow-api-server")
    assert airflow.env["MLPIPE_MLFLOW_WEBHOOK_SECRET"] == keys["secret"]
    assert airflow.env["AIRFLOW__CORE__PLUGINS_FOLDER"].endswith("/plugins")
    assert settings.webhook_url == "http://127.0.0.1:18080/mlpipe/mlflow/webhook"


def test_mlflow_on_another_host_is_allowed_by_name():
    argv = services.mlflow_server_argv("mlflow.internal", 5000, "sqlite:///x.db", "s3://b/a")
    allowed = argv[argv.index("--allowed-hosts") + 1]
    assert "mlflow.internal:*" in allowed.split(",")


def test_addresses_and_urls(settings):
    assert services.listen_address(settings, "s3") == ("127.0.0.1", 19000)
    assert services.listen_address(settings, "dask-scheduler") == ("127.0.0.1", 18786)
    assert services.listen_address(settings, "dask-workers") is None
    assert services.listen_address(settings, "airflow-scheduler") is None
    assert services.service_url(settings, "dask-workers") == "tcp://127.0.0.1:18786"
    assert services.service_url(settings, "airflow-api-server") == "http://127.0.0.1:18080"
    assert services.service_url(settings, "airflow-triggerer") is None


def test_airflow_env_is_kept_in_the_state_folder(settings):
    env = services.airflow_env(settings)
    assert env["AIRFLOW_HOME"] == str(settings.state_path / "airflow")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    assert env["S3_ENDPOINT_URL"] == settings.s3_endpoint_url
    assert services.airflow_env(settings) == env  # keys and log ports are kept
    ports = services.airflow_log_ports(settings)
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(ports["worker"])
