"""Days go by with nobody at the keyboard (issue 12, item 6): the real scheduler runs
`ingest_orders` by the contract's schedule, one run per day with the day's partition key; each
day's file arrives in the drop folder one after another. A day that is there is ingested and
validated; a late day waits (no worker slot held) and then proceeds; a day that never comes
raises the deadline alert and fails. No run is triggered by a person or a test."""

from __future__ import annotations

import time

import pytest

from ml import storage
from ml.dev.airflow_api import AirflowClient
from tests.e2e.schedule.conftest import DAYS
from tests.orders_data import drop_orders, orders_day

pytestmark = pytest.mark.e2e

ON_TIME, LATE, NEVER = DAYS


def _runs_by_day(client: AirflowClient, dag_id: str, days=DAYS, timeout=240) -> dict[str, dict]:
    """The runs of `dag_id` by partition key, once there is one for each of `days`."""
    deadline = time.monotonic() + timeout
    while True:
        runs = {r.get("partition_key"): r for r in client.runs(dag_id)}
        if all(d.isoformat() in runs for d in days) or time.monotonic() > deadline:
            return runs
        time.sleep(2)


def _wait_state(client, dag_id, run_id, states, timeout=240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.run(dag_id, run_id)
        if run["state"] in states or time.monotonic() > deadline:
            return run
        time.sleep(2)


def _task_states(client, dag_id, run_id) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in client.task_instances(dag_id, run_id)}


def test_days_arrive_and_are_taken_in_without_a_person(scheduled_stack, alert_receiver):
    settings, lifecycle = scheduled_stack
    drop_orders(settings.drop_path, ON_TIME)  # the first day's export is there already
    lifecycle.up(settings, timeout=300)
    client = AirflowClient(settings.airflow_api_url)
    client.wait_for_dags(["ingest_orders", "validate_orders"], timeout=180)

    runs = _runs_by_day(client, "ingest_orders")
    assert sorted(k for k in runs if k) == [d.isoformat() for d in DAYS], runs.keys()
    assert {runs[d.isoformat()]["run_type"] for d in DAYS} == {"scheduled"}

    # The late day's run waits for its file: up for reschedule, not holding a worker slot.
    late_id = runs[LATE.isoformat()]["dag_run_id"]
    deadline = time.monotonic() + 180
    while (
        _task_states(client, "ingest_orders", late_id).get("ingest_partitions")
        != "up_for_reschedule"
    ):
        assert time.monotonic() < deadline, _task_states(client, "ingest_orders", late_id)
        time.sleep(1)
    drop_orders(settings.drop_path, LATE)  # ... and then it arrives

    on_time = client.wait_for_run("ingest_orders", runs[ON_TIME.isoformat()]["dag_run_id"], 240)
    late = client.wait_for_run("ingest_orders", late_id, 240)
    never = client.wait_for_run("ingest_orders", runs[NEVER.isoformat()]["dag_run_id"], 300)
    assert (on_time["state"], late["state"], never["state"]) == ("success", "success", "failed")

    # The day that never came: the deadline alert went out, naming the run.
    alert = alert_receiver.wait_for(
        lambda a: (
            a["title"].startswith("deadline missed: ingest_orders")
            and a["fields"].get("run_id") == never["dag_run_id"]
        ),
        timeout=120,
    )
    assert "the partition" in alert["text"]

    # Each day that came is one raw batch and one validated batch, validated by a run of its key.
    validated = _runs_by_day(client, "validate_orders", days=[ON_TIME, LATE], timeout=120)
    for day in (ON_TIME, LATE):
        run = _wait_state(
            client,
            "validate_orders",
            validated[day.isoformat()]["dag_run_id"],
            {"success", "failed"},
        )
        assert run["state"] == "success", run
    assert NEVER.isoformat() not in validated
    partitions = {f"date={d.isoformat()}": len(orders_day(d)) for d in (ON_TIME, LATE)}
    raw = storage.list_batches("raw", "orders")
    assert sorted(b.partition for b in raw) == sorted(partitions)  # no duplicates
    kept = storage.latest_batches("validated", "orders")
    assert {p: m.rows for p, m in kept.items()} == partitions
