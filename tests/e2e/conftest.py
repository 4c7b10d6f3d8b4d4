"""The whole local stack on free ports, with Postgres as the Airflow and MLflow database when
one answers (the production path), SQLite otherwise."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests import postgres_cluster
from tests.alert_receiver import AlertReceiver
from tests.conftest import free_port, pipeline_environment

log = logging.getLogger(__name__)

POSTGRES_URL = os.environ.get(
    "MLPIPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _postgres(url: str):
    import psycopg2

    try:
        conn = psycopg2.connect(url, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        log.warning("no Postgres at %s (%s): the e2e stack runs on SQLite", url, exc)
        return None
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def fresh_databases(url: str = POSTGRES_URL) -> Iterator[dict[str, str]]:
    """Fresh Airflow and MLflow databases in the Postgres at `url` (dropped afterwards), or {}
    for SQLite when none answers."""
    conn = _postgres(url)
    if conn is None:
        yield {}
        return
    suffix = uuid.uuid4().hex[:8]
    names = {"airflow": f"mlpipe_e2e_airflow_{suffix}", "mlflow": f"mlpipe_e2e_mlflow_{suffix}"}
    with conn.cursor() as cur:
        for name in names.values():
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    base = url.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        yield {
            "MLPIPE_AIRFLOW_DATABASE_URL": f"postgresql+psycopg2://{base}/{names['airflow']}",
            "MLPIPE_MLFLOW_DATABASE_URL": f"postgresql://{base}/{names['mlflow']}",
        }
    finally:
        conn = _postgres(url)  # a new connection: the server may have restarted since
        if conn is not None:
            with conn.cursor() as cur:
                for name in names.values():
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.close()


@pytest.fixture(scope="package")
def airflow_postgres() -> Iterator[postgres_cluster.Cluster | None]:
    """The package stack's own PostgreSQL cluster, which a test restarts under Airflow; None
    where the machine has no PostgreSQL server binaries (the shared server is used then)."""
    if not postgres_cluster.available():
        log.warning("no initdb/pg_ctl: the e2e stack uses the shared Postgres (or SQLite)")
        yield None
        return
    with postgres_cluster.throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="package")
def databases(airflow_postgres) -> Iterator[dict[str, str]]:
    """The package stack's databases (`fresh_databases`), in its own cluster when there is one."""
    with fresh_databases(airflow_postgres.url if airflow_postgres else POSTGRES_URL) as urls:
        yield urls


@pytest.fixture(scope="package")
def alert_receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def stack_env(state_dir) -> dict[str, str]:
    """A local stack's environment: its state folder, every service on a free loopback port."""
    return {
        "MLPIPE_STATE_DIR": str(state_dir),
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{free_port()}",
        "MLPIPE_AIRFLOW_API_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "e2e",
        "AWS_SECRET_ACCESS_KEY": "e2e-secret",
        "MLPIPE_AIRFLOW_PARALLELISM": "4",
        # The DAG files do not change during a test run: no re-parsing every 30 s (CPU).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    }


@pytest.fixture(scope="package")
def stack(tmp_path_factory, databases, alert_receiver) -> Iterator:
    """`mlpipe stack up` on free ports in a temporary state folder; `down` afterwards."""
    from ml import settings as settings_module
    from ml.dev.stack import lifecycle as stack_module

    env = {
        **stack_env(tmp_path_factory.mktemp("stack")),
        "MLPIPE_ALERT_WEBHOOK_URL": alert_receiver.url,
        # Every scoring run here takes longer than this: each raises its deadline alert.
        "MLPIPE_SCORING_DEADLINE_S": "5",
        **databases,
    }
    with pipeline_environment(env):
        s = settings_module.get_settings()
        try:
            stack_module.up(s, timeout=240)
            yield s
        finally:
            stack_module.down(s)


# The shared stack's chains, run at once by the first module that needs one (test_chain):
# dataset -> approve its promotion (its contract asks a person).
CHAINS = {"flights": False, "flights_delay_minutes": True, "flights_delay_class": True}
DATE_FROM, DATE_TO = "2013-01-01", "2013-01-07"


@dataclass(frozen=True)
class Chains:
    since: datetime  # before the first of their runs was triggered
    runs: dict[str, dict[str, dict]]  # dataset -> DAG id -> its run, ended


@pytest.fixture(scope="package")
def chains(stack) -> Chains:
    """Each chain of CHAINS through the REST API, all at once (a client each)."""
    from ml.dev import demo
    from ml.dev.airflow_api import AirflowClient

    since = datetime.now(UTC)
    runs = demo.run_chains(
        lambda: AirflowClient(stack.airflow_api_url), CHAINS, DATE_FROM, DATE_TO, timeout=900
    )
    return Chains(since, runs)
