"""The local stack behind `mlpipe stack up|status|down`: S3 API, MLflow, Dask, Airflow.

Every service runs as a background process in a session and process group of its own, with a
pid file `<state>/run/<name>.pid` and a log `<state>/logs/<name>.log`. `down` stops each service
by process group, then sweeps stragglers: processes still in one of the services' sessions
(Airflow task runners put themselves into process groups of their own), descendants, and
processes whose environment carries `MLPIPE_STACK_OWNER=<state>` (everything we start gets it;
it is not reliable alone, since `setproctitle`, used by Dask and Airflow, clobbers
`/proc/<pid>/environ`).

Endpoints come from the settings URLs only; nothing here hard-codes a port.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import psutil

import ml
from ml import cluster
from ml.errors import MlpipeError
from ml.settings import LOOPBACK_HOSTS, Settings, get_settings

log = logging.getLogger(__name__)

REPO = Path(ml.__file__).resolve().parents[1]
DAGS_FOLDER = REPO / "dags"
PLUGINS_FOLDER = REPO / "plugins"

#: Environment mark inherited by every process of a stack: the state folder it belongs to.
OWNER_ENV = "MLPIPE_STACK_OWNER"
#: Environment mark naming the service a process was started as.
SERVICE_ENV = "MLPIPE_STACK_SERVICE"

#: Service groups `up`/`down` accept, in start order.
GROUPS = ("s3", "mlflow", "dask", "airflow")

AIRFLOW_SERVICES = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
#: Every process the stack may run, in start order (stopped in reverse).
SERVICES = ("s3", "mlflow", "dask-scheduler", "dask-workers", *AIRFLOW_SERVICES)
_GROUP_SERVICES = {
    "s3": ("s3",),
    "mlflow": ("mlflow",),
    "dask": ("dask-scheduler", "dask-workers"),
    "airflow": AIRFLOW_SERVICES,
}

DEFAULT_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 40


class StackError(MlpipeError):
    """A service of the local stack failed to start or to become healthy."""


@dataclass(frozen=True)
class ServiceStatus:
    """One row of `status()`."""

    name: str
    state: str  # "running" or "stopped"
    pid: int | None
    url: str | None


@dataclass
class _Launched:
    """A process this call of `up` started (or found running)."""

    name: str
    pid: int
    started_at: float
    popen: subprocess.Popen | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------
# Paths and endpoints


def run_dir(settings: Settings) -> Path:
    return settings.state_path / "run"


def log_dir(settings: Settings) -> Path:
    return settings.state_path / "logs"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return log_dir(settings) / f"{name}.log"


def _host_port(url: str, default_port: int | None = None) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return host, port


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _executable(name: str) -> str:
    """A console script of this environment (next to the running interpreter), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name!r} is not installed (looked next to {sys.executable} and on PATH)")
    return found


def _database_url(url: str) -> str:
    """A Postgres URL without a driver names psycopg2 when psycopg (3) is not installed:
    SQLAlchemy 2.1 made psycopg 3 the default driver of `postgresql://`."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url


def _mlflow_backend_uri(settings: Settings) -> str:
    if settings.mlflow_database_url:
        return _database_url(settings.mlflow_database_url)
    return _sqlite_url(settings.state_path / "mlflow" / "mlflow.db")


def _forget_lost_artifacts(settings: Settings) -> None:
    """A fresh local S3 server starts empty (moto keeps data in memory), so the artifacts that
    the local MLflow store points at are gone: start that store afresh as well, rather than keep
    a registry whose models cannot be loaded. A configured database is never touched."""
    if settings.mlflow_database_url:
        return
    store = settings.state_path / "mlflow" / "mlflow.db"
    if store.exists():
        log.info("local S3 server starts empty: starting the local MLflow store %s afresh", store)
        store.unlink()


def _airflow_home(settings: Settings) -> Path:
    return settings.state_path / "airflow"


def _airflow_database_url(settings: Settings) -> str:
    if settings.airflow_database_url:
        return _database_url(settings.airflow_database_url)
    return _sqlite_url(_airflow_home(settings) / "airflow.db")


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
    path = _airflow_home(settings) / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet

    return _write_new(
        path,
        {
            "jwt_secret": secrets.token_urlsafe(48),
            "api_secret_key": secrets.token_urlsafe(48),
            "fernet_key": Fernet.generate_key().decode(),
        },
    )


def _free_ports(count: int) -> list[int]:
    import socket

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
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def _airflow_log_ports(settings: Settings, repick: bool = False) -> dict[str, int]:
    """Ports of the scheduler's and triggerer's log servers (Airflow's defaults are the fixed
    8793 and 8794 on every interface, which clash between stacks). Picked once, kept in the
    state folder; `repick` picks new ones when a kept one is taken."""
    path = _airflow_home(settings) / "log-ports.json"
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
    home = _airflow_home(s)
    host, port = _host_port(s.airflow_api_url)
    keys = _airflow_secrets(s)
    log_ports = _airflow_log_ports(s)
    env = {
        **s.service_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(s.airflow_parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": s.airflow_api_url.rstrip("/") + "/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _airflow_database_url(s),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_ports["worker"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(log_ports["trigger"]),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Default is <tmp>/airflow, shared by every Airflow on the machine.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
    }
    return env


# --------------------------------------------------------------------------------------------
# Service definitions


def _service_specs(settings: Settings, name: str) -> tuple[list[str], dict[str, str], Path]:
    """argv, extra environment and working directory of one service."""
    s = settings
    state = s.state_path
    if name == "s3":
        host, port = _host_port(s.s3_endpoint_url)
        return [_executable("moto_server"), "-H", host, "-p", str(port)], {}, state
    if name == "mlflow":
        host, port = _host_port(s.mlflow_tracking_uri)
        (state / "mlflow").mkdir(parents=True, exist_ok=True)
        argv = [
            _executable("mlflow"),
            "server",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            _mlflow_backend_uri(s),
            "--serve-artifacts",
            "--artifacts-destination",
            f"s3://{s.bucket_mlflow}/artifacts",
        ]
        if host not in LOOPBACK_HOSTS:
            # The default host allow-list is loopback + private IPs; add the configured name.
            argv += [
                "--allowed-hosts",
                f"localhost,localhost:*,127.0.0.1,127.0.0.1:*,{host},{host}:*",
            ]
        # The job runner (huey consumer, GenAI features) is on by default: not needed here.
        return argv, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, state / "mlflow"
    if name == "dask-scheduler":
        host, port = _host_port(s.dask_scheduler_address, 8786)
        argv = [
            _executable("dask"),
            "scheduler",
            "--host",
            host,
            "--port",
            str(port),
            "--dashboard-address",
            f"{_url_host(host)}:{_dashboard_port(host, port)}",
        ]
        return argv, {}, REPO
    if name == "dask-workers":
        (state / "dask").mkdir(parents=True, exist_ok=True)
        argv = [
            _executable("dask"),
            "worker",
            s.dask_scheduler_address,
            "--nworkers",
            str(s.dask_workers),
            "--nthreads",
            str(s.dask_threads_per_worker),
            "--memory-limit",
            s.dask_worker_memory_limit,
            "--local-directory",
            str(state / "dask"),
        ]
        return argv, dict(cluster.WORKER_ENV), REPO
    if name in AIRFLOW_SERVICES:
        command = name.removeprefix("airflow-")
        return [_executable("airflow"), command], airflow_env(s), REPO
    raise ValueError(f"unknown service {name!r}; services are {', '.join(SERVICES)}")


def _dashboard_port(host: str, scheduler_port: int) -> int:
    """The scheduler port + 1 when free, else any free port."""
    import socket

    for candidate in (scheduler_port + 1, 0):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    return 0


def _service_url(settings: Settings, name: str) -> str | None:
    if name == "s3":
        return settings.s3_endpoint_url
    if name == "mlflow":
        return settings.mlflow_tracking_uri
    if name in ("dask-scheduler", "dask-workers"):
        return settings.dask_scheduler_address
    if name == "airflow-api-server":
        return settings.airflow_api_url
    return None


def _services_of(groups: Iterable[str] | None) -> list[str]:
    if groups is None:
        return list(SERVICES)
    wanted = set()
    for group in groups:
        if group in _GROUP_SERVICES:
            wanted.update(_GROUP_SERVICES[group])
        elif group in SERVICES:
            wanted.add(group)
        else:
            raise ValueError(f"unknown service {group!r}; use some of {', '.join(GROUPS)}")
    return [name for name in SERVICES if name in wanted]


# --------------------------------------------------------------------------------------------
# Processes


def _child_env(settings: Settings, name: str, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **settings.service_env(), **extra}
    env[OWNER_ENV] = str(settings.state_path)
    env[SERVICE_ENV] = name
    env["PYTHONUNBUFFERED"] = "1"
    # Console scripts of this environment first, whatever the caller's PATH.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def _has_mark(proc: psutil.Process, settings: Settings) -> bool:
    """Whether a process's environment carries this stack's mark."""
    try:
        environ = proc.environ()
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
        return False
    return environ.get(OWNER_ENV) == str(settings.state_path)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _running_pid(settings: Settings, name: str) -> int | None:
    """The pid of a live process of ours named by the pid file; a stale pid file is removed."""
    path = pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        # Ours: a live session leader of our user, created before its pid file was written
        # (a recycled pid belongs to a younger process).
        proc = psutil.Process(pid)
        ours = (
            _alive(proc)
            and os.getsid(pid) == pid
            and os.getpgid(pid) == pid
            and proc.uids().real == os.getuid()
            and proc.create_time() <= path.stat().st_mtime + 1.0
        )
    except (psutil.Error, OSError):
        ours = False
    if not ours:
        log.debug("removing stale pid file %s (pid %s)", path, pid)
        path.unlink(missing_ok=True)
        return None
    return pid


def _open_log(settings: Settings, name: str, argv: list[str]) -> IO[bytes]:
    path = log_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("ab")
    fh.write(f"\n===== {datetime.now().isoformat(timespec='seconds')} {' '.join(argv)}\n".encode())
    fh.flush()
    return fh


def _listen_address(settings: Settings, name: str) -> tuple[str, int] | None:
    if name == "s3":
        return _host_port(settings.s3_endpoint_url)
    if name == "mlflow":
        return _host_port(settings.mlflow_tracking_uri)
    if name == "dask-scheduler":
        return _host_port(settings.dask_scheduler_address, 8786)
    if name == "airflow-api-server":
        return _host_port(settings.airflow_api_url)
    return None


def _port_taken(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _start(settings: Settings, name: str) -> _Launched:
    address = _listen_address(settings, name)
    if address is not None and _port_taken(*address):
        raise StackError(
            f"cannot start {name}: {address[0]}:{address[1]} is already in use by a process "
            f"this stack did not start (no live pid file {pid_file(settings, name)}); "
            "stop it or change the URL in the settings"
        )
    argv, extra, cwd = _service_specs(settings, name)
    cwd.mkdir(parents=True, exist_ok=True)
    with _open_log(settings, name, argv) as logfh:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=_child_env(settings, name, extra),
            stdin=subprocess.DEVNULL,
            stdout=logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    path = pid_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{popen.pid}\n")
    tmp.replace(path)
    log.info("started %s (pid %d), log %s", name, popen.pid, log_file(settings, name))
    return _Launched(name, popen.pid, time.time(), popen)


def _ensure_started(settings: Settings, name: str) -> _Launched:
    pid = _running_pid(settings, name)
    if pid is not None:
        log.info("%s is already running (pid %d)", name, pid)
        return _Launched(name, pid, psutil.Process(pid).create_time())
    return _start(settings, name)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _fail(settings: Settings, name: str, why: str) -> StackError:
    path = log_file(settings, name)
    if not path.exists():  # not a process of ours (an external endpoint)
        log.error("%s %s", name, why)
        return StackError(f"{name} {why}")
    tail = _log_tail(path)
    log.error("%s %s; last lines of %s:\n%s", name, why, path, tail)
    return StackError(f"{name} {why}; see its log {path}\n--- last lines ---\n{tail}")


def _exited(launched: _Launched) -> int | None:
    """The exit code if the process ended, else None."""
    if launched.popen is not None:
        return launched.popen.poll()
    try:
        return None if _alive(psutil.Process(launched.pid)) else -1
    except psutil.NoSuchProcess:
        return -1


def _wait_healthy(
    settings: Settings,
    launched: list[_Launched],
    check: Callable[[], object],
    deadline: float,
    what: str | Callable[[], str],
) -> object:
    """Poll `check()` until it returns something truthy; fail early if a process exits.

    On timeout the error names `what` (or what `what()` returns) and the tail of its log.
    """
    last_error: object = None
    while True:
        for item in launched:
            code = _exited(item)
            if code is not None:
                raise _fail(settings, item.name, f"exited with code {code} while starting")
        try:
            result = check()
        except Exception as exc:  # not up yet
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            name = what() if callable(what) else what
            raise _fail(
                settings, name, f"did not become healthy in time (last check: {last_error})"
            )
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------
# Health checks


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET a URL; loopback URLs never go through a proxy."""
    loopback = (urlsplit(url).hostname or "") in LOOPBACK_HOSTS
    opener = _DIRECT if loopback else urllib.request.build_opener()
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def s3_healthy(settings: Settings) -> bool:
    """The S3 endpoint answers HTTP (any status: an anonymous request may be refused)."""
    status, _ = _http_get(settings.s3_endpoint_url)
    return status > 0


def mlflow_healthy(settings: Settings) -> bool:
    status, _ = _http_get(settings.mlflow_tracking_uri.rstrip("/") + "/health")
    return status == 200


def airflow_health(settings: Settings) -> dict:
    """The JSON of `GET /api/v2/monitor/health`."""
    status, body = _http_get(settings.airflow_api_url.rstrip("/") + "/api/v2/monitor/health")
    if status != 200:
        raise StackError(f"Airflow health answered HTTP {status}")
    return json.loads(body)


def airflow_unhealthy(settings: Settings, since: float | None = None) -> list[str]:
    """The Airflow services that are not healthy yet (empty: all healthy).

    Reads `GET /api/v2/monitor/health`: `metadatabase`, `scheduler`, `dag_processor` and
    `triggerer`, each with a `status` ("healthy"/"unhealthy"; `None` for a component that never
    ran) and a `latest_<component>_heartbeat`. With `since` (epoch seconds), heartbeats must be
    newer than that: after a crash the newest job row can look alive for a while.
    """
    try:
        health = airflow_health(settings)
    except (OSError, ValueError, StackError):
        return ["airflow-api-server"]
    bad = []
    if health.get("metadatabase", {}).get("status") != "healthy":
        bad.append("airflow-api-server")
    for component in ("scheduler", "dag_processor", "triggerer"):
        info = health.get(component) or {}
        beat = info.get(f"latest_{component}_heartbeat")
        fresh = since is None or (beat and datetime.fromisoformat(beat).timestamp() >= since)
        if info.get("status") != "healthy" or not fresh:
            bad.append("airflow-" + component.replace("_", "-"))
    return bad


def airflow_healthy(settings: Settings, since: float | None = None) -> bool:
    """Metadatabase, scheduler, dag processor and triggerer all healthy."""
    return not airflow_unhealthy(settings, since)


@functools.cache
def _warn_without_bokeh() -> None:
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        log.warning("the Dask dashboard needs bokeh>=3.1, which is not installed")


def _dask_check(settings: Settings, timeout: float) -> str:
    """Connect, wait for all workers; return the dashboard URL (or a note why there is none)."""
    from distributed import Client

    with Client(settings.dask_scheduler_address, timeout=min(timeout, 10)) as client:
        client.wait_for_workers(settings.dask_workers, timeout=timeout)
        port = client.scheduler_info().get("services", {}).get("dashboard")
    if not port:
        return "unavailable (the scheduler runs without a dashboard)"
    _warn_without_bokeh()
    host, _ = _host_port(settings.dask_scheduler_address, 8786)
    return f"http://{_url_host(host)}:{port}/status"


# --------------------------------------------------------------------------------------------
# Public API


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One `up`/`down` at a time per state folder."""
    path = run_dir(settings) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(
    settings: Settings | None = None,
    services: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, str]:
    """Start the local stack (or what of it is not running) and wait until it is healthy.

    `services` picks groups among `GROUPS` (default: all). Returns display name -> URL.
    Raises `StackError` naming the service and its log when one does not come up in
    `timeout` seconds; processes already started are left running (`down` stops them).
    """
    s = settings or get_settings()
    wanted = _services_of(services)
    started_at = time.monotonic()
    for folder in (run_dir(s), log_dir(s)):
        folder.mkdir(parents=True, exist_ok=True)
    urls: dict[str, str] = {}

    with _locked(s):
        launched: dict[str, _Launched] = {}
        local_s3 = "s3" in wanted and s.starts_local_s3
        if local_s3:
            if _running_pid(s, "s3") is None and _running_pid(s, "mlflow") is None:
                _forget_lost_artifacts(s)
            launched["s3"] = _ensure_started(s, "s3")
        for name in ("mlflow", "dask-scheduler", "dask-workers"):
            if name in wanted:
                launched[name] = _ensure_started(s, name)

        # `airflow db migrate` runs meanwhile; the Airflow services start once it is done.
        airflow_wanted = [n for n in AIRFLOW_SERVICES if n in wanted]
        migrate = None
        if airflow_wanted and any(_running_pid(s, n) is None for n in airflow_wanted):
            if not any(_running_pid(s, n) for n in AIRFLOW_SERVICES):
                _airflow_log_ports(s, repick=True)
            migrate = _start_migrate(s)

        deadline = started_at + timeout
        if "s3" in wanted:
            if local_s3:
                _wait_healthy(s, [launched["s3"]], lambda: s3_healthy(s), deadline, "s3")
            else:
                _wait_healthy(s, [], lambda: s3_healthy(s), deadline, "s3 (external endpoint)")
            from ml.storage import ensure_buckets

            ensure_buckets(s)
            urls["S3"] = s.s3_endpoint_url

        if migrate is not None:
            _finish_migrate(s, migrate, deadline)
            ensure_gpu_pool(s)
        for name in airflow_wanted:
            launched[name] = _ensure_started(s, name)

        if "mlflow" in wanted:
            _wait_healthy(s, [launched["mlflow"]], lambda: mlflow_healthy(s), deadline, "mlflow")
            urls["MLflow"] = s.mlflow_tracking_uri
        if "dask-scheduler" in wanted:
            procs = [launched[n] for n in ("dask-scheduler", "dask-workers") if n in launched]

            def dask_ready() -> str:
                remaining = max(1.0, deadline - time.monotonic())
                return _dask_check(s, min(remaining, 10.0))

            dashboard = _wait_healthy(s, procs, dask_ready, deadline, "dask-scheduler")
            urls["Dask"] = s.dask_scheduler_address
            urls["Dask dashboard"] = str(dashboard)
        if airflow_wanted:
            procs = [launched[n] for n in airflow_wanted]
            since = min(p.started_at for p in procs) - 2.0
            unhealthy = ["airflow-api-server"]

            def airflow_ready() -> bool:
                unhealthy[:] = airflow_unhealthy(s, since)
                return not unhealthy

            _wait_healthy(s, procs, airflow_ready, deadline, lambda: unhealthy[0])
            ensure_promotion_pool(s)
            urls["Airflow"] = s.airflow_api_url

    log.info("stack is up in %.1f s", time.monotonic() - started_at)
    return urls


def ensure_promotion_pool(settings: Settings) -> None:
    """The one-slot Airflow pool `promotion`: alias moves (promote_<dataset>) never interleave."""
    from ml.dev.airflow_api import AirflowAPIError, AirflowClient

    client = AirflowClient(settings.airflow_api_url)
    pool = {
        "name": "promotion",
        "slots": 1,
        "description": "Alias moves, one at a time",
        "include_deferred": False,
    }
    try:
        client.request("POST", "/pools", json=pool)
    except AirflowAPIError as exc:
        if "-> 409" not in str(exc):
            raise
        client.request("PATCH", "/pools/promotion", json=pool)


def _start_migrate(settings: Settings) -> tuple[subprocess.Popen, float]:
    name = "airflow-db-migrate"
    argv = [_executable("airflow"), "db", "migrate"]
    with _open_log(settings, name, argv) as logfh:
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env=_child_env(settings, name, airflow_env(settings)),
            stdin=subprocess.DEVNULL,
            stdout=logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info("running airflow db migrate (pid %d)", popen.pid)
    return popen, time.monotonic()


def _finish_migrate(
    settings: Settings, migrate: tuple[subprocess.Popen, float], deadline: float
) -> None:
    popen, began = migrate
    try:
        code = popen.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        raise _fail(settings, "airflow-db-migrate", "did not finish in time") from None
    if code != 0:
        raise _fail(settings, "airflow-db-migrate", f"failed with exit code {code}")
    log.info("airflow db migrate done in %.1f s", time.monotonic() - began)


def ensure_gpu_pool(settings: Settings) -> int:
    """Create or resize the `gpu` pool training runs in: `gpu_pool_slots`, else one per GPU."""
    slots = settings.gpu_pool_slots
    if slots is None:
        smi = shutil.which("nvidia-smi")
        found = (
            subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30) if smi else None
        )
        slots = max(1, found.stdout.count("GPU ") if found and found.returncode == 0 else 0)
    argv = [
        _executable("airflow"),
        "pools",
        "set",
        "gpu",
        str(slots),
        "Training (one slot per GPU)",
    ]
    done = subprocess.run(
        argv,
        cwd=REPO,
        env={**os.environ, **airflow_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise StackError(f"airflow pools set gpu {slots} failed: {done.stderr.strip()[-500:]}")
    log.info("airflow pool gpu: %s slot(s)", slots)
    return slots


def status(settings: Settings | None = None) -> list[ServiceStatus]:
    """One row per service: running or stopped, its pid and URL."""
    s = settings or get_settings()
    rows = []
    for name in SERVICES:
        url = _service_url(s, name)
        if name == "s3" and not s.starts_local_s3:
            try:
                ok = s3_healthy(s)
            except OSError:
                ok = False
            rows.append(ServiceStatus("s3 (external)", "running" if ok else "stopped", None, url))
            continue
        pid = _running_pid(s, name)
        rows.append(ServiceStatus(name, "running" if pid else "stopped", pid, url))
    return rows


#: `down` stops these first, while the API server still answers: task runners report their
#: final state through the execution API, and the scheduler waits for them.
_STOP_FIRST = ("airflow-scheduler", "airflow-triggerer", "airflow-dag-processor")


def down(settings: Settings | None = None, services: Iterable[str] | None = None) -> None:
    """Stop the stack (or the given groups): SIGTERM each process group, SIGKILL after ~15 s.

    Also stops what the services started outside their process groups (Airflow task runners,
    found by session and by descent) and, when stopping everything, any process marked as
    this stack's, so nothing is left behind. Airflow's scheduler, triggerer and dag processor
    stop first, the API server and the other services after them.
    """
    s = settings or get_settings()
    names = list(reversed(_services_of(services)))
    sweep_marked = services is None
    run_dir(s).mkdir(parents=True, exist_ok=True)
    with _locked(s):
        leaders: dict[str, int] = {}
        for name in names:
            pid = _running_pid(s, name)
            if pid is not None:
                leaders[name] = pid
        first = {n: p for n, p in leaders.items() if n in _STOP_FIRST}
        rest = {n: p for n, p in leaders.items() if n not in _STOP_FIRST}
        for phase in (first, rest):
            if phase:
                _stop_sessions(s, phase, include_marked=False)
        # Stragglers: whatever is still in those sessions or (all services) carries our mark.
        late = _stack_processes(s, set(leaders.values()), sweep_marked)
        if late:
            log.warning("stopping %d straggler(s): %s", len(late), _describe(late))
            _terminate(late, set())
        for name in names:
            pid_file(s, name).unlink(missing_ok=True)
    log.info("stopped %s", ", ".join(names))


def _stop_sessions(settings: Settings, leaders: dict[str, int], include_marked: bool) -> None:
    for name, pid in leaders.items():
        log.info("stopping %s (pid %d)", name, pid)
    sessions = set(leaders.values())
    victims = _stack_processes(settings, sessions, include_marked)
    groups = set(sessions)
    for proc in victims:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    _terminate(victims, groups)


def _terminate(victims: list[psutil.Process], groups: set[int]) -> None:
    """SIGTERM groups and processes; SIGKILL what is left after `STOP_TIMEOUT` seconds."""
    _signal_all(groups, victims, signal.SIGTERM)
    _, alive = psutil.wait_procs(victims, timeout=STOP_TIMEOUT)
    if alive:
        log.warning("killing %d process(es) that ignored SIGTERM: %s", len(alive), _describe(alive))
        _signal_all(groups, alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)


def _describe(procs: Iterable[psutil.Process]) -> str:
    parts = []
    for proc in procs:
        try:
            parts.append(f"{proc.pid} ({' '.join(proc.cmdline())[:80]})")
        except psutil.Error:
            parts.append(str(proc.pid))
    return ", ".join(parts)


def _stack_processes(
    settings: Settings, sessions: set[int], include_marked: bool
) -> list[psutil.Process]:
    """Live processes of the given sessions, their descendants, and (optionally) marked ones."""
    me, uid = os.getpid(), os.getuid()
    found: dict[int, psutil.Process] = {}
    for leader in sessions:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(leader)
            for member in [proc, *proc.children(recursive=True)]:
                found[member.pid] = member
    for proc in psutil.process_iter():
        if proc.pid == me or proc.pid in found:
            continue
        try:
            if proc.uids().real != uid:
                continue
            in_session = os.getsid(proc.pid) in sessions
        except (psutil.Error, OSError):
            continue
        if in_session or (include_marked and _has_mark(proc, settings)):
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
    return [p for p in found.values() if p.pid != me and _alive(p)]


def _signal_all(groups: set[int], procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    """Signal each group once, then each process outside those groups, once.

    Never twice: a second SIGTERM while Airflow's scheduler shuts its executor down can hang it.
    """
    own_group = os.getpgrp()
    signalled = set()
    for pgid in groups:
        if pgid == own_group:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
            signalled.add(pgid)
    for proc in procs:
        try:
            if os.getpgid(proc.pid) in signalled:
                continue
        except OSError:
            continue
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
