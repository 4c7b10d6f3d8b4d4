"""`mlpipe stack up|status|down`: start the local stack (or what of it is not running) and
wait until it is healthy, report each service, stop everything it started.

Every service runs as a background process in a session and process group of its own, with a
pid file `<state>/run/<name>.pid` and a log `<state>/logs/<name>.log` (`ml.dev.stack.processes`).
Endpoints come from the settings URLs only; nothing here hard-codes a port.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ml import storage
from ml.dev.stack import auth, bootstrap, health, processes, secure_s3
from ml.dev.stack.layout import AIRFLOW_SERVICES, SERVICES, log_dir, pid_file, run_dir, services_of
from ml.dev.stack.processes import Launched, ensure_started, running_pid, wait_healthy
from ml.dev.stack.services import airflow_log_ports, service_url
from ml.identity import use_identity
from ml.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0

#: `down` stops these first, while the API server still answers: task runners report their
#: final state through the execution API, and the scheduler waits for them.
_STOP_FIRST = ("airflow-scheduler", "airflow-triggerer", "airflow-dag-processor")


@dataclass(frozen=True)
class ServiceStatus:
    """One row of `status()`."""

    name: str
    state: str  # "running" or "stopped"
    pid: int | None
    url: str | None


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
    s.check_secrets()
    wanted = services_of(services)
    started_at = time.monotonic()
    deadline = started_at + timeout
    for folder in (run_dir(s), log_dir(s)):
        folder.mkdir(parents=True, exist_ok=True)

    with processes.locked(s):
        # Secure mode: the services get keys the S3 server makes, so they start after it.
        first = ["s3"] if s.secure and "s3" in wanted else wanted
        launched = _launch_servers(s, first)
        # `airflow db migrate` runs meanwhile; the Airflow services start once it is done.
        airflow_wanted = [n for n in AIRFLOW_SERVICES if n in wanted]
        migrate = _begin_airflow(s, airflow_wanted)
        urls = _wait_s3(s, wanted, launched, deadline)
        if first != wanted:
            launched.update(_launch_servers(s, [n for n in wanted if n != "s3"]))
        if migrate is not None:
            bootstrap.finish_migrate(s, migrate, deadline)
            bootstrap.ensure_gpu_pool(s)
        for name in airflow_wanted:
            launched[name] = ensure_started(s, name)
        urls.update(_wait_mlflow_and_dask(s, wanted, launched, deadline))
        if airflow_wanted:
            _wait_airflow(s, [launched[n] for n in airflow_wanted], deadline)
            bootstrap.ensure_promotion_pool(s)
            urls["Airflow"] = s.airflow_api_url
            if "mlflow" in wanted:  # both ends are up: MLflow's alias moves reach the plugin
                bootstrap.ensure_mlflow_webhook(s)

    log.info("stack is up in %.1f s", time.monotonic() - started_at)
    return urls


def _launch_servers(s: Settings, wanted: list[str]) -> dict[str, Launched]:
    """Start the local S3 server (afresh MLflow store with it), MLflow and Dask, if wanted."""
    launched: dict[str, Launched] = {}
    if "s3" in wanted and s.starts_local_s3:
        if running_pid(s, "s3") is None and running_pid(s, "mlflow") is None:
            bootstrap.forget_lost_artifacts(s)
        launched["s3"] = ensure_started(s, "s3")
    for name in ("mlflow", "dask-scheduler", "dask-workers"):
        if name in wanted:
            launched[name] = ensure_started(s, name)
    return launched


def _begin_airflow(s: Settings, airflow_wanted: list[str]) -> bootstrap.Migration | None:
    """Start `airflow db migrate` when an Airflow service is wanted and not running."""
    if not any(running_pid(s, n) is None for n in airflow_wanted):
        return None
    if not any(running_pid(s, n) for n in AIRFLOW_SERVICES):
        airflow_log_ports(s, repick=True)
    return bootstrap.start_migrate(s)


def _wait_s3(
    s: Settings, wanted: list[str], launched: dict[str, Launched], deadline: float
) -> dict[str, str]:
    """Wait for the S3 endpoint (ours or an external one), then create the buckets."""
    if "s3" not in wanted:
        return {}
    if "s3" in launched:
        wait_healthy(s, [launched["s3"]], lambda: health.s3_healthy(s), deadline, "s3")
    else:
        wait_healthy(s, [], lambda: health.s3_healthy(s), deadline, "s3 (external endpoint)")
    if s.secure and "s3" in launched and launched["s3"].popen is not None:  # started now
        secure_s3.provision_secure_s3(s)  # users, policies, keys, buckets (by the admin)
    else:
        with use_identity(secure_s3.admin_identity(s)):
            storage.ensure_buckets(s)
    return {"S3": s.s3_endpoint_url}


def _wait_mlflow_and_dask(
    s: Settings, wanted: list[str], launched: dict[str, Launched], deadline: float
) -> dict[str, str]:
    """Wait for MLflow and for the Dask scheduler with all its workers."""
    urls = {}
    if "mlflow" in wanted:
        wait_healthy(s, [launched["mlflow"]], lambda: health.mlflow_healthy(s), deadline, "mlflow")
        for line in auth.provision_mlflow_users(s):  # secure mode: the pipeline's users
            log.info("mlflow: %s", line)
        urls["MLflow"] = s.mlflow_tracking_uri
    if "dask-scheduler" in wanted:
        procs = [launched[n] for n in ("dask-scheduler", "dask-workers") if n in launched]

        def dask_ready() -> str:
            remaining = max(1.0, deadline - time.monotonic())
            return health.dask_check(s, min(remaining, 10.0))

        dashboard = wait_healthy(s, procs, dask_ready, deadline, "dask-scheduler")
        urls["Dask"] = s.dask_scheduler_address
        urls["Dask dashboard"] = str(dashboard)
    return urls


def _wait_airflow(s: Settings, procs: list[Launched], deadline: float) -> None:
    """Wait until every Airflow component reports a heartbeat newer than its start."""
    since = min(p.started_at for p in procs) - 2.0
    unhealthy = ["airflow-api-server"]

    def airflow_ready() -> bool:
        unhealthy[:] = health.airflow_unhealthy(s, since)
        return not unhealthy

    wait_healthy(s, procs, airflow_ready, deadline, lambda: unhealthy[0])


def status(settings: Settings | None = None) -> list[ServiceStatus]:
    """One row per service: running or stopped, its pid and URL."""
    s = settings or get_settings()
    rows = []
    for name in SERVICES:
        url = service_url(s, name)
        if name == "s3" and not s.starts_local_s3:
            try:
                ok = health.s3_healthy(s)
            except OSError:
                ok = False
            rows.append(ServiceStatus("s3 (external)", "running" if ok else "stopped", None, url))
            continue
        pid = running_pid(s, name)
        rows.append(ServiceStatus(name, "running" if pid else "stopped", pid, url))
    return rows


def down(settings: Settings | None = None, services: Iterable[str] | None = None) -> None:
    """Stop the stack (or the given groups): SIGTERM each process group, SIGKILL after ~15 s.

    Also stops what the services started outside their process groups (Airflow task runners,
    found by session and by descent) and, when stopping everything, any process marked as
    this stack's, so nothing is left behind. Airflow's scheduler, triggerer and dag processor
    stop first, the API server and the other services after them.
    """
    s = settings or get_settings()
    names = list(reversed(services_of(services)))
    sweep_marked = services is None
    run_dir(s).mkdir(parents=True, exist_ok=True)
    with processes.locked(s):
        leaders: dict[str, int] = {}
        for name in names:
            pid = running_pid(s, name)
            if pid is not None:
                leaders[name] = pid
        first = {n: p for n, p in leaders.items() if n in _STOP_FIRST}
        rest = {n: p for n, p in leaders.items() if n not in _STOP_FIRST}
        for phase in (first, rest):
            if phase:
                processes.stop_sessions(s, phase, include_marked=False)
        # Stragglers: whatever is still in those sessions or (all services) carries our mark.
        late = processes.stack_processes(s, set(leaders.values()), sweep_marked)
        if late:
            log.warning("stopping %d straggler(s): %s", len(late), processes.describe(late))
            processes.terminate(late, set())
        for name in names:
            pid_file(s, name).unlink(missing_ok=True)
    log.info("stopped %s", ", ".join(names))
