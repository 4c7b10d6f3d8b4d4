"""Health checks of the local stack's services over HTTP (S3 API, MLflow, Airflow) and the
Dask scheduler's client protocol."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import urllib.error
import urllib.request
from datetime import datetime
from urllib.parse import urlsplit

from ml.dev.stack.layout import DEFAULT_DASK_PORT, StackError, host_port, url_host
from ml.settings import LOOPBACK_HOSTS, Settings

log = logging.getLogger(__name__)

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
    """The S3 endpoint answers HTTP (any status: an anonymous request may be refused).

    The local server in secure mode is asked on its own API, not S3's: moto counts every S3
    request towards the few it lets through before it enforces IAM (the admin's)."""
    url = settings.s3_endpoint_url
    if settings.secure and settings.starts_local_s3:
        url = url.rstrip("/") + "/moto-api/"
    status, _ = _http_get(url)
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


@functools.cache
def _warn_without_bokeh() -> None:
    if importlib.util.find_spec("bokeh") is None:
        log.warning("the Dask dashboard needs bokeh>=3.1, which is not installed")


def dask_check(settings: Settings, timeout: float) -> str:
    """Connect, wait for all workers; return the dashboard URL (or a note why there is none)."""
    from distributed import Client

    with Client(settings.dask_scheduler_address, timeout=min(timeout, 10)) as client:
        client.wait_for_workers(settings.dask_workers, timeout=timeout)
        port = client.scheduler_info().get("services", {}).get("dashboard")
    if not port:
        return "unavailable (the scheduler runs without a dashboard)"
    _warn_without_bokeh()
    host, _ = host_port(settings.dask_scheduler_address, DEFAULT_DASK_PORT)
    return f"http://{url_host(host)}:{port}/status"
