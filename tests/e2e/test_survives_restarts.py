"""Airflow's own services failing mid-run (issue 13, item 8): the scheduler killed with its
executor's task processes, as a crashed host or container would lose them, then started again;
the Postgres server under the Airflow database restarted. The run completes, a task that was
cut off retries, every day is committed once and validated.

The contract-only orders dataset (`ingest_orders -> validate_orders`, no training DAGs), on days
of its own; runs after test_second_dataset, whose assertions name that module's days only."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psutil
import pytest
import requests

from ml import storage
from ml.dev.airflow_api import AirflowClient
from ml.dev.stack import processes
from ml.dev.stack.layout import AIRFLOW_SERVICES
from tests.orders_data import drop_orders, orders_day

pytestmark = pytest.mark.e2e

SCHEDULER = "airflow-scheduler"


def _running_ingest(client: AirflowClient, run_id: str, timeout: float = 180) -> list[dict]:
    """Wait until an ingest task of the run (a chunk of days) is running; return the task
    instances."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tis = client.task_instances("ingest_orders", run_id)
        if any(t["task_id"] == "ingest_partitions" and t["state"] == "running" for t in tis):
            return tis
        time.sleep(0.2)
    raise AssertionError(f"no ingest task of {run_id} ran within {timeout} s")


def _kill_scheduler(stack) -> int:
    """SIGKILL the scheduler's whole process group (its LocalExecutor workers and their task
    processes with it); return how many processes went."""
    pid = processes.running_pid(stack, SCHEDULER)
    assert pid is not None, "the stack has no scheduler"
    group = [p for p in psutil.process_iter() if _pgid(p.pid) == pid]
    os.killpg(pid, signal.SIGKILL)
    gone, alive = psutil.wait_procs(group, timeout=30)
    assert not alive, alive
    return len(gone)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@dataclass
class FaultedRun:
    """An orders run over `days` with a fault injected while a day's ingest task ran."""

    ingest: dict
    validate: dict
    tries: list[int]  # try number of each day's ingest task
    expected: dict[str, int]  # partition -> orders in its file
    raw: list  # raw batches of those partitions
    validated: dict[str, int]  # partition -> validated rows

    @property
    def survived(self) -> bool:
        return (
            self.ingest["state"] == self.validate["state"] == "success"
            and self.validated == self.expected
            and sorted(b.partition for b in self.raw) == sorted(self.expected)
        )

    def record(self, record_fault, case: str, kind: str, note: str) -> None:
        record_fault(
            case=case,
            kind=kind,
            survived=self.survived,
            rows_in=sum(self.expected.values()),
            rows_validated=sum(self.validated.values()),
            duplicates=len(self.raw) - len(self.expected),
            note=f"{note}; ingest tries per day {sorted(self.tries)}",
        )

    def check(self) -> None:
        assert self.ingest["state"] == self.validate["state"] == "success", (
            self.ingest,
            self.validate,
        )
        assert sorted(b.partition for b in self.raw) == sorted(self.expected)  # one per day
        assert self.validated == self.expected  # every order validated


RESTARTED: list[str] = []  # Airflow services the supervisor below had to start again


def _supervised(stack, wait, timeout: float = 600):
    """`wait()` (a wait of a few seconds) until it returns, while doing what a deployment's
    supervisor does (compose's `restart: unless-stopped`, systemd): an Airflow service of the
    stack that exited is started again. The local stack has no supervisor of its own; a
    scheduler may exit when its database goes away under it (seen here, not every time)."""
    deadline = time.monotonic() + timeout
    while True:
        for name in AIRFLOW_SERVICES:
            if processes.running_pid(stack, name) is None:
                RESTARTED.append(name)
                processes.ensure_started(stack, name)
        try:
            return wait()
        except (TimeoutError, requests.RequestException):  # not done yet, or the API restarting
            if time.monotonic() > deadline:
                raise


def _orders_run(stack, days: list[date], fault) -> FaultedRun:
    client = AirflowClient(stack.airflow_api_url)
    client.wait_for_dags(["ingest_orders", "validate_orders"], timeout=180)
    for day in days:
        drop_orders(stack.drop_path, day)
    since = datetime.now(UTC)
    conf = {"date_from": days[0].isoformat(), "date_to": days[-1].isoformat()}
    run_id = client.trigger("ingest_orders", conf)
    _running_ingest(client, run_id)
    fault()
    ingest = _supervised(stack, lambda: client.wait_for_run("ingest_orders", run_id, timeout=5))
    validate = _supervised(stack, lambda: client.wait_for_new_run("validate_orders", since, 5))
    tries = [
        t["try_number"]
        for t in client.task_instances("ingest_orders", run_id)
        if t["task_id"] == "ingest_partitions"
    ]
    expected = {f"date={d.isoformat()}": len(orders_day(d)) for d in days}
    validated = storage.latest_batches("validated", "orders")
    return FaultedRun(
        ingest=ingest,
        validate=validate,
        tries=tries,
        expected=expected,
        raw=[b for b in storage.list_batches("raw", "orders") if b.partition in expected],
        validated={p: validated[p].rows for p in expected if p in validated},
    )


def test_a_run_completes_after_its_scheduler_is_killed(stack, record_fault):
    killed = []

    def kill_and_restart():
        killed.append(_kill_scheduler(stack))
        processes.ensure_started(stack, SCHEDULER)

    run = _orders_run(stack, [date(2024, 4, d) for d in range(1, 5)], kill_and_restart)
    run.record(
        record_fault,
        "Airflow scheduler killed with its task processes mid-run, then restarted",
        "scheduler",
        f"{killed[0]} processes killed",
    )
    run.check()
    assert max(run.tries) > 1, "no task was cut off by the kill"  # the fault was real


def test_a_run_completes_across_a_restart_of_airflows_postgres(
    stack, airflow_postgres, record_fault
):
    """The Airflow database's server restarted at once (every open connection cut) while a
    day's ingest task runs: the services reconnect and the run completes."""
    if airflow_postgres is None:
        pytest.skip("no PostgreSQL server binaries on this machine (initdb, pg_ctl)")
    RESTARTED.clear()
    run = _orders_run(stack, [date(2024, 4, d) for d in range(5, 9)], airflow_postgres.restart)
    run.record(
        record_fault,
        "Postgres under the Airflow database restarted mid-run (connections cut)",
        "postgres",
        f"pg_ctl restart -m immediate; services the supervisor restarted: {RESTARTED or 'none'}",
    )
    run.check()
