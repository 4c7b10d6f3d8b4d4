"""The Airflow scheduler killed mid-run, with its executor's task processes, as a crashed host or
container would lose them, then started again (issue 13, item 8): the run completes, the task
that was cut off retries, every day is committed once and validated.

The contract-only orders dataset (`ingest_orders -> validate_orders`, no training DAGs), on days
of its own; runs after test_second_dataset, whose assertions name that module's days only."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, date, datetime

import psutil
import pytest

from ml import storage
from ml.dev.airflow_api import AirflowClient
from ml.dev.stack import processes
from tests.orders_data import drop_orders, orders_day

pytestmark = pytest.mark.e2e

DAYS = [date(2024, 4, d) for d in range(1, 5)]
SCHEDULER = "airflow-scheduler"


def _running_ingest(client: AirflowClient, run_id: str, timeout: float = 180) -> list[dict]:
    """Wait until a day's ingest task of the run is running; return the task instances."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tis = client.task_instances("ingest_orders", run_id)
        if any(t["task_id"] == "ingest_day" and t["state"] == "running" for t in tis):
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


def test_a_run_completes_after_its_scheduler_is_killed(stack, record_fault):
    client = AirflowClient(stack.airflow_api_url)
    client.wait_for_dags(["ingest_orders", "validate_orders"], timeout=180)
    for day in DAYS:
        drop_orders(stack.drop_path, day)
    since = datetime.now(UTC)
    run_id = client.trigger(
        "ingest_orders", {"date_from": DAYS[0].isoformat(), "date_to": DAYS[-1].isoformat()}
    )
    _running_ingest(client, run_id)
    killed = _kill_scheduler(stack)
    processes.ensure_started(stack, SCHEDULER)
    ingest = client.wait_for_run("ingest_orders", run_id, timeout=600)
    validate = client.wait_for_new_run("validate_orders", since, timeout=300)
    tries = {
        t["map_index"]: t["try_number"]
        for t in client.task_instances("ingest_orders", run_id)
        if t["task_id"] == "ingest_day"
    }
    expected = {f"date={d.isoformat()}": len(orders_day(d)) for d in DAYS}
    raw = [b for b in storage.list_batches("raw", "orders") if b.partition in expected]
    validated = storage.latest_batches("validated", "orders")
    rows_in = sum(expected.values())
    rows_validated = sum(validated[p].rows for p in expected if p in validated)
    survived = (
        ingest["state"] == "success"
        and validate["state"] == "success"
        and rows_validated == rows_in
        and len(raw) == len(expected)
    )
    record_fault(
        case="Airflow scheduler killed with its task processes mid-run, then restarted",
        kind="scheduler",
        survived=survived,
        rows_in=rows_in,
        rows_validated=rows_validated,
        duplicates=len(raw) - len(expected),
        note=f"{killed} processes killed; ingest tries per day {sorted(tries.values())}",
    )
    assert ingest["state"] == "success" and validate["state"] == "success", (ingest, validate)
    assert max(tries.values()) > 1, "no task was cut off by the kill"  # the fault was real
    assert sorted(b.partition for b in raw) == sorted(expected)  # one raw batch per day
    assert {p: validated[p].rows for p in expected} == expected  # every order validated
