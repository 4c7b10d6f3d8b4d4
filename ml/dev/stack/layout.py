"""What the local stack is made of and where its state lives: service names and groups, the
state folder's pid and log files, endpoint parsing, console scripts."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from ml.errors import MlpipeError
from ml.settings import Settings

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
GROUP_SERVICES = {
    "s3": ("s3",),
    "mlflow": ("mlflow",),
    "dask": ("dask-scheduler", "dask-workers"),
    "airflow": AIRFLOW_SERVICES,
}

DEFAULT_DASK_PORT = 8786


class StackError(MlpipeError):
    """A service of the local stack failed to start or to become healthy."""


def services_of(groups: Iterable[str] | None) -> list[str]:
    """The services of some groups (or single services), in start order; all for None."""
    if groups is None:
        return list(SERVICES)
    wanted = set()
    for group in groups:
        if group in GROUP_SERVICES:
            wanted.update(GROUP_SERVICES[group])
        elif group in SERVICES:
            wanted.add(group)
        else:
            raise ValueError(f"unknown service {group!r}; use some of {', '.join(GROUPS)}")
    return [name for name in SERVICES if name in wanted]


# --------------------------------------------------------------------------------------------
# The state folder


def run_dir(settings: Settings) -> Path:
    return settings.state_path / "run"


def log_dir(settings: Settings) -> Path:
    return settings.state_path / "logs"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return log_dir(settings) / f"{name}.log"


# --------------------------------------------------------------------------------------------
# Endpoints and programs


def host_port(url: str, default_port: int | None = None) -> tuple[str, int]:
    """Host and port of a URL or `host:port` address (the scheme's port when none is given)."""
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return host, port


def url_host(host: str) -> str:
    """A host as written in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host


def executable(name: str) -> str:
    """A console script of this environment (next to the running interpreter), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name!r} is not installed (looked next to {sys.executable} and on PATH)")
    return found
