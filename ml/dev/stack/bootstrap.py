"""What the local stack sets up besides its processes: a fresh MLflow store when the S3 server
starts empty, the Airflow database migration, and the Airflow pools `gpu` and `promotion`."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from ml.dev.airflow_api import AirflowAPIError
from ml.dev.stack import auth
from ml.dev.stack.layout import StackError, executable
from ml.dev.stack.processes import fail, spawn
from ml.dev.stack.services import REPO, airflow_env, mlflow_store, mlflow_webhook_keys
from ml.settings import Settings

log = logging.getLogger(__name__)

MIGRATE = "airflow-db-migrate"


def forget_lost_artifacts(settings: Settings) -> None:
    """A fresh local S3 server starts empty (moto keeps data in memory), so the artifacts that
    the local MLflow store points at are gone: start that store afresh as well, rather than keep
    a registry whose models cannot be loaded. A configured database is never touched."""
    if settings.mlflow_database_url:
        return
    store = mlflow_store(settings)
    if store.exists():
        log.info("local S3 server starts empty: starting the local MLflow store %s afresh", store)
        store.unlink()


@dataclass(frozen=True)
class Migration:
    """A running `airflow db migrate`."""

    popen: subprocess.Popen
    began: float


def start_migrate(settings: Settings) -> Migration:
    """Start `airflow db migrate` (in a session of its own, logged like a service)."""
    argv = [executable("airflow"), "db", "migrate"]
    popen = spawn(settings, MIGRATE, argv, airflow_env(settings), REPO)
    log.info("running airflow db migrate (pid %d)", popen.pid)
    return Migration(popen, time.monotonic())


def finish_migrate(settings: Settings, migrate: Migration, deadline: float) -> None:
    """Wait for the migration; raise `StackError` with its log tail if it fails or is late."""
    popen = migrate.popen
    try:
        code = popen.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        raise fail(settings, MIGRATE, "did not finish in time") from None
    if code != 0:
        raise fail(settings, MIGRATE, f"failed with exit code {code}")
    log.info("airflow db migrate done in %.1f s", time.monotonic() - migrate.began)


def _gpu_count() -> int:
    """GPUs `nvidia-smi -L` lists (0 without it)."""
    smi = shutil.which("nvidia-smi")
    found = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30) if smi else None
    return found.stdout.count("GPU ") if found and found.returncode == 0 else 0


def ensure_gpu_pool(settings: Settings) -> int:
    """Create or resize the `gpu` pool training runs in: `gpu_pool_slots`, else one per GPU."""
    slots = settings.gpu_pool_slots
    if slots is None:
        slots = max(1, _gpu_count())
    argv = [
        executable("airflow"),
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


def ensure_promotion_pool(settings: Settings) -> None:
    """The one-slot Airflow pool `promotion`: alias moves (promote_<dataset>) never interleave."""
    client = auth.airflow_client(settings)
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


MLFLOW_WEBHOOK = "mlpipe-airflow"
ALIAS_EVENTS = ["model_version_alias.created", "model_version_alias.deleted"]


def ensure_mlflow_webhook(settings: Settings) -> str:
    """Register (or update) the MLflow webhook that tells the Airflow plugin about alias moves,
    so a move of `champion` anywhere (the MLflow UI, a plain client) is audited and scored.
    Returns the webhook id."""
    from ml import tracking  # deferred: mlflow loads only when the stack registers the webhook

    with tracking.environ(auth.mlflow_client_env(settings)):  # secure mode: the MLflow admin
        return _register_webhook(tracking.client(settings=settings), settings)


def _register_webhook(client, settings: Settings) -> str:
    fields = {
        "url": settings.webhook_url,
        "events": ALIAS_EVENTS,
        "secret": mlflow_webhook_keys(settings)["secret"],
        "description": "alias moves -> audit record + champion asset event (plugins/)",
    }
    ours = [h for h in client.list_webhooks(max_results=1000) if h.name == MLFLOW_WEBHOOK]
    if ours:
        hook = client.update_webhook(ours[0].webhook_id, status="ACTIVE", **fields)
    else:
        hook = client.create_webhook(name=MLFLOW_WEBHOOK, **fields)
    log.info("MLflow webhook %s -> %s", hook.webhook_id, settings.webhook_url)
    return hook.webhook_id
