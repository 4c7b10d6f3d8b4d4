"""Days go by with nobody at the keyboard (issue 12, items 2 and 6): the real scheduler runs
`ingest_orders` by the contract's schedule, one run per day with the day's partition key; each
day's file arrives in the drop folder one after another. A day that is there is ingested,
validated and scored with the champion (`score_partitions_orders`, one run per validated key);
a late day waits (no worker slot held) and then proceeds; a day that never comes raises the
deadline alert and fails. The model's policy is weekly retraining: no day starts one. No run of
these is triggered by a person or a test, but the REST API backfill of the week before them,
which is taken in the same way: each day ingested, validated and scored once."""

from __future__ import annotations

import time
from datetime import date, datetime

import pytest

from ml import storage
from ml.dev.airflow_api import TERMINAL, AirflowClient
from ml.model_versions import CHAMPION, alias_version
from tests.e2e.schedule.conftest import BACKFILL, DAYS, MODEL
from tests.orders_data import drop_orders, orders_day

pytestmark = pytest.mark.e2e

ON_TIME, LATE, NEVER = DAYS
DAGS = ["ingest_orders", "validate_orders", "score_partitions_orders", "preprocess_orders"]


@pytest.fixture(scope="module")
def client(scheduled_stack) -> AirflowClient:
    client = AirflowClient(scheduled_stack.settings.airflow_api_url)
    client.wait_for_dags(DAGS, timeout=180)
    return client


@pytest.fixture(scope="module")
def backfill(scheduled_stack, client) -> list[str]:
    """The week before the scheduled days, backfilled from the REST API (their files are there):
    it runs beside the scheduled days. Its partition keys."""
    for day in BACKFILL:
        drop_orders(scheduled_stack.settings.drop_path, day)
    keys = [d.isoformat() for d in BACKFILL]
    started = client.backfill("ingest_orders", keys[0], keys[-1], max_active_runs=3)
    assert started["dag_id"] == "ingest_orders"
    return keys


def _runs_by_day(client: AirflowClient, dag_id: str, days=DAYS, timeout=240) -> dict[str, dict]:
    """The runs of `dag_id` by partition key, once there is one for each of `days`."""
    deadline = time.monotonic() + timeout
    while True:
        runs = {r.get("partition_key"): r for r in client.runs(dag_id)}
        if all(d.isoformat() in runs for d in days) or time.monotonic() > deadline:
            return runs
        time.sleep(2)


def _ended(client, dag_id: str, days: list[date], timeout: float = 300) -> dict[str, dict]:
    """The runs of `dag_id` keyed by `days`, once every one of them ended."""
    keys = [d.isoformat() for d in days]
    deadline = time.monotonic() + timeout
    while True:
        runs = {r.get("partition_key"): r for r in client.runs(dag_id)}
        done = {k: runs[k] for k in keys if k in runs and runs[k]["state"] in TERMINAL}
        if len(done) == len(keys):
            return done
        assert time.monotonic() < deadline, {k: runs.get(k, {}).get("state") for k in keys}
        time.sleep(2)


def _task_states(client, dag_id, run_id) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in client.task_instances(dag_id, run_id)}


def _taken_in(days: list[date], champion: str) -> None:
    """Each day is one raw batch, one validated batch with all its orders, and one set of
    predictions of it by the champion: nothing twice."""
    expected = {f"date={d.isoformat()}": len(orders_day(d)) for d in days}
    raw = [b.partition for b in storage.list_batches("raw", "orders") if b.partition in expected]
    assert sorted(raw) == sorted(expected)
    validated = storage.latest_batches("validated", "orders")
    assert {p: validated[p].rows for p in expected if p in validated} == expected
    scored = [m for m in storage.list_batches("predictions", "orders") if m.partition in expected]
    assert sorted(m.partition for m in scored) == sorted(expected)
    # The team's first model, or a better one the week's tick trained and promoted meanwhile.
    champions = {champion, alias_version(MODEL, CHAMPION)}
    for m in scored:
        assert m.extra["model_name"] == MODEL and str(m.extra["model_version"]) in champions
        assert m.rows == expected[m.partition]
        assert validated[m.partition].ref in m.upstream


def test_days_arrive_and_are_taken_in_without_a_person(
    scheduled_stack, client, backfill, alert_receiver
):
    runs = _runs_by_day(client, "ingest_orders")
    assert sorted(k for k in runs if k in {d.isoformat() for d in DAYS}) == [
        d.isoformat() for d in DAYS
    ], runs.keys()
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
    drop_orders(scheduled_stack.settings.drop_path, LATE)  # ... and then it arrives

    ingested = _ended(client, "ingest_orders", DAYS)
    states = tuple(ingested[d.isoformat()]["state"] for d in DAYS)
    assert states == ("success", "success", "failed")

    # The day that never came: the deadline alert went out, naming the run.
    never_id = ingested[NEVER.isoformat()]["dag_run_id"]
    alert = alert_receiver.wait_for(
        lambda a: (
            a["title"].startswith("deadline missed: ingest_orders")
            and a["fields"].get("run_id") == never_id
        ),
        timeout=120,
    )
    assert "the partition" in alert["text"]

    # Each day that came is validated and scored by runs of its own key, nothing twice.
    for dag_id in ("validate_orders", "score_partitions_orders"):
        ended = _ended(client, dag_id, [ON_TIME, LATE])
        assert {r["state"] for r in ended.values()} == {"success"}, (dag_id, ended)
        assert NEVER.isoformat() not in _runs_by_day(client, dag_id, [], 0)
    _taken_in([ON_TIME, LATE], scheduled_stack.champion)


def test_a_backfill_from_the_rest_api_takes_in_each_day_once(scheduled_stack, client, backfill):
    """An Airflow backfill of 7 days is 7 runs, each with its day's key, each validated and
    scored by runs of the same key: one raw batch, one validated batch and one set of
    predictions per day, no duplicates."""
    days = [date.fromisoformat(k) for k in backfill]
    ingested = _ended(client, "ingest_orders", days, timeout=420)
    assert {r["state"] for r in ingested.values()} == {"success"}, ingested
    assert {r["run_type"] for r in ingested.values()} == {"backfill"}
    for dag_id in ("validate_orders", "score_partitions_orders"):
        ended = _ended(client, dag_id, days, timeout=300)
        assert {r["state"] for r in ended.values()} == {"success"}, (dag_id, ended)
    _taken_in(days, scheduled_stack.champion)


def test_no_new_day_retrains_a_weekly_model(scheduled_stack, client, backfill):
    """Ten new validated days, and the policy (`retrain: {every: 7d}`, Mondays) started no
    preprocessing: the only run there may be is the week's own tick, which Airflow runs when a
    cron DAG is first deployed (catch-up off); training follows preprocessing alone."""
    runs = client.runs("preprocess_orders")
    assert len(runs) <= 1, runs
    for run in runs:
        tick = datetime.fromisoformat(run["logical_date"].replace("Z", "+00:00"))
        assert run["run_type"] == "scheduled", run
        assert (tick.weekday(), tick.hour, tick.minute) == (0, 0, 0), run  # Monday 00:00
    assert len(client.runs("train_orders")) <= len(runs)
