"""Which processes the local stack runs: each service's command line, environment and working
folder, the environment every Airflow process shares, and each service's address."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

import ml
from ml import cluster
from ml.dev.stack import auth
from ml.dev.stack.layout import (
    AIRFLOW_SERVICES,
    DEFAULT_DASK_PORT,
    SERVICES,
    executable,
    host_port,
    url_host,
)
from ml.dev.stack.secure_s3 import secure_s3_server_env, secure_s3_service_env
from ml.settings import LOOPBACK_HOSTS, Settings, get_settings

REPO = Path(ml.__file__).resolve().parents[1]
DAGS_FOLDER = REPO / "dags"
PLUGINS_FOLDER = REPO / "plugins"

#: The MLflow server's job runner (huey consumer, GenAI features) is on by default: not needed.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class ServiceSpec:
    """How one service runs: its command line, extra environment and working folder."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


def service_spec(settings: Settings, name: str) -> ServiceSpec:
    """The command line, extra environment and working folder of one service."""
    if name in AIRFLOW_SERVICES:
        command = name.removeprefix("airflow-")
        return ServiceSpec([executable("airflow"), command], airflow_env(settings), REPO)
    build = _SPECS.get(name)
    if build is None:
        raise ValueError(f"unknown service {name!r}; services are {', '.join(SERVICES)}")
    return build(settings)


def moto_server_argv(host: str, port: int) -> list[str]:
    """The S3 API server (moto's), on one address."""
    return [executable("moto_server"), "-H", host, "-p", str(port)]


def mlflow_server_argv(host: str, port: int, backend_uri: str, artifacts: str) -> list[str]:
    """An MLflow tracking server with one worker, proxying artifacts to `artifacts`."""
    argv = [
        executable("mlflow"),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts,
    ]
    if host not in LOOPBACK_HOSTS:
        # The default host allow-list is loopback + private IPs; add the configured name.
        argv += [
            "--allowed-hosts",
            f"localhost,localhost:*,127.0.0.1,127.0.0.1:*,{host},{host}:*",
        ]
    return argv


def _s3_spec(s: Settings) -> ServiceSpec:
    argv = moto_server_argv(*host_port(s.s3_endpoint_url))
    return ServiceSpec(argv, secure_s3_server_env(s), s.state_path)


def _mlflow_spec(s: Settings) -> ServiceSpec:
    host, port = host_port(s.mlflow_tracking_uri)
    folder = s.state_path / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    argv = mlflow_server_argv(
        host, port, mlflow_backend_uri(s), f"s3://{s.bucket_mlflow}/artifacts"
    )
    argv += auth.mlflow_server_args(s)
    env = {
        **MLFLOW_SERVER_ENV,
        **auth.mlflow_server_env(s),
        **mlflow_webhook_env(s),
        **secure_s3_service_env(s, "mlflow"),
    }
    return ServiceSpec(argv, env, folder)


def mlflow_webhook_keys(settings: Settings) -> dict[str, str]:
    """The MLflow webhook's HMAC secret (the settings' one, else one made once and kept 0600 in
    the state folder) and the Fernet key the MLflow server stores webhook secrets with (kept,
    so a restarted server can still read the secret it stored)."""
    path = settings.state_path / "mlflow" / "webhook.json"
    if path.exists():
        keys = json.loads(path.read_text())
    else:
        made = {
            "secret": secrets.token_urlsafe(32),
            "encryption_key": Fernet.generate_key().decode(),
        }
        keys = _write_new(path, made)
    if settings.mlflow_webhook_secret is not None:
        keys = {**keys, "secret": settings.mlflow_webhook_secret.get_secret_value()}
    return keys


def mlflow_webhook_env(settings: Settings) -> dict[str, str]:
    """What the MLflow server needs to post webhooks to the local Airflow plugin: its secrets'
    key, plain http, and (only for a loopback receiver) private addresses; a short cache of the
    webhook list, so a webhook registered at start is used at once."""
    env = {
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": mlflow_webhook_keys(settings)["encryption_key"],
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_CACHE_TTL": "5",
    }
    if (host_port(settings.webhook_url)[0] or "") in LOOPBACK_HOSTS:
        env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] = "true"
    return env


def _dask_scheduler_spec(s: Settings) -> ServiceSpec:
    host, port = host_port(s.dask_scheduler_address, DEFAULT_DASK_PORT)
    argv = [
        executable("dask"),
        "scheduler",
        "--host",
        host,
        "--port",
        str(port),
        "--dashboard-address",
        f"{url_host(host)}:{_dashboard_port(host, port)}",
    ]
    return ServiceSpec(argv, dict(cluster.SCHEDULER_ENV), REPO)


def _dask_workers_spec(s: Settings) -> ServiceSpec:
    (s.state_path / "dask").mkdir(parents=True, exist_ok=True)
    argv = [
        executable("dask"),
        "worker",
        s.dask_scheduler_address,
        "--nworkers",
        str(s.dask_workers),
        "--nthreads",
        str(s.dask_threads_per_worker),
        "--memory-limit",
        s.dask_worker_memory_limit,
        "--local-directory",
        str(s.state_path / "dask"),
    ]
    env = {
        **cluster.WORKER_ENV,
        **auth.mlflow_process_env(s),
        **secure_s3_service_env(s, "dask-workers"),
    }
    return ServiceSpec(argv, env, REPO)


_SPECS: dict[str, Callable[[Settings], ServiceSpec]] = {
    "s3": _s3_spec,
    "mlflow": _mlflow_spec,
    "dask-scheduler": _dask_scheduler_spec,
    "dask-workers": _dask_workers_spec,
}


def _dashboard_port(host: str, scheduler_port: int) -> int:
    """The scheduler port + 1 when free, else any free port."""
    for candidate in (scheduler_port + 1, 0):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    return 0


#: The services that listen on the address of their URL.
_LISTENERS = ("s3", "mlflow", "dask-scheduler", "airflow-api-server")


def service_url(settings: Settings, name: str) -> str | None:
    """The URL `status` shows for a service (None for Airflow's background services)."""
    if name == "s3":
        return settings.s3_endpoint_url
    if name == "mlflow":
        return settings.mlflow_tracking_uri
    if name in ("dask-scheduler", "dask-workers"):
        return settings.dask_scheduler_address
    if name == "airflow-api-server":
        return settings.airflow_api_url
    return None


def listen_address(settings: Settings, name: str) -> tuple[str, int] | None:
    """The host and port a service listens on (None for a service that listens on none)."""
    if name not in _LISTENERS:
        return None
    default_port = DEFAULT_DASK_PORT if name == "dask-scheduler" else None
    return host_port(service_url(settings, name), default_port)


# --------------------------------------------------------------------------------------------
# Databases


def database_url(url: str) -> str:
    """A Postgres URL without a driver names psycopg2 when psycopg (3) is not installed:
    SQLAlchemy 2.1 made psycopg 3 the default driver of `postgresql://`."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def mlflow_store(settings: Settings) -> Path:
    """The local MLflow store (SQLite), used when no MLflow database is configured."""
    return settings.state_path / "mlflow" / "mlflow.db"


def mlflow_backend_uri(settings: Settings) -> str:
    if settings.mlflow_database_url:
        return database_url(settings.mlflow_database_url)
    return _sqlite_url(mlflow_store(settings))


# --------------------------------------------------------------------------------------------
# Airflow


def airflow_home(settings: Settings) -> Path:
    return settings.state_path / "airflow"


def _airflow_database_url(settings: Settings) -> str:
    if settings.airflow_database_url:
        return database_url(settings.airflow_database_url)
    return _sqlite_url(airflow_home(settings) / "airflow.db")


def _write_new(path: Path, values: dict) -> dict:
    """Write JSON (mode 0600) unless the file exists; return what the file holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    try:
        os.link(tmp, path)  # atomic, and fails if another process got there first
    except FileExistsError:
        values = json.loads(path.read_text())
    finally:
        tmp.unlink(missing_ok=True)
    return values


def _airflow_secrets(settings: Settings) -> dict[str, str]:
    """Keys all Airflow processes must share; generated once, kept (0600) in the state folder."""
    path = airflow_home(settings) / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    return _write_new(
        path,
        {
            "jwt_secret": secrets.token_urlsafe(48),
            "api_secret_key": secrets.token_urlsafe(48),
            "fernet_key": Fernet.generate_key().decode(),
        },
    )


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def airflow_log_ports(settings: Settings, repick: bool = False) -> dict[str, int]:
    """Ports of the scheduler's and triggerer's log servers (Airflow's defaults are the fixed
    8793 and 8794 on every interface, which clash between stacks). Picked once, kept in the
    state folder; `repick` picks new ones when a kept one is taken."""
    path = airflow_home(settings) / "log-ports.json"
    if path.exists():
        ports = json.loads(path.read_text())
        if not repick or all(_port_free(p) for p in ports.values()):
            return ports
        path.unlink(missing_ok=True)
    worker, trigger = _free_ports(2)
    return _write_new(path, {"worker": worker, "trigger": trigger})


def airflow_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment every Airflow process of the local stack runs with.

    Includes `service_env()`, so tasks reach S3, MLflow and Dask. Creates the state folder's
    secrets file (JWT secret, API secret key, Fernet key) on first use.
    """
    s = settings or get_settings()
    home = airflow_home(s)
    host, port = host_port(s.airflow_api_url)
    keys = _airflow_secrets(s)
    log_ports = airflow_log_ports(s)
    env = {
        **s.service_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # LocalExecutor, with the heavy libraries imported before its workers fork (plugins/).
        "AIRFLOW__CORE__EXECUTOR": "mlpipe_executor.PreloadingLocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(s.airflow_parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        **auth.airflow_auth_env(s),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": s.airflow_api_url.rstrip("/") + "/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _airflow_database_url(s),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_ports["worker"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(log_ports["trigger"]),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # A scheduler that died (with its executor's task processes) is noticed in about a
        # minute, not five: its running tasks fail on their missed heartbeats and retry, its
        # queued ones are reset for the new scheduler (tests/e2e/test_survives_restarts.py).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        # Default is <tmp>/airflow, shared by every Airflow on the machine.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
        # The plugin's MLflow webhook receiver checks signatures with it (plugins/).
        "MLPIPE_MLFLOW_WEBHOOK_SECRET": mlflow_webhook_keys(s)["secret"],
    }
    env.update(secure_s3_service_env(s, "airflow"))  # secure mode: per-stage S3 connections
    return env
