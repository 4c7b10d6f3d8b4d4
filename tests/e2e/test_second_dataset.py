"""A second dataset, onboarded by its contract alone (`data_contracts/orders.yaml`), run through
the real Airflow services: daily CSV files in the drop folder -> `ingest_orders` -> `validate_orders`."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import pytest

from ml import storage
from ml.dev.airflow_api import AirflowClient
from tests.orders_data import drop_orders, orders_csv, orders_day

pytestmark = pytest.mark.e2e

DAYS = [date(2024, 3, 1), date(2024, 3, 2)]


@pytest.fixture(scope="module")
def client(stack) -> AirflowClient:
    client = AirflowClient(stack.airflow_api_url)
    client.wait_for_dags(["ingest_orders", "validate_orders"], timeout=180)
    return client


@pytest.fixture(scope="module")
def runs(stack, client) -> dict:
    # The stack's Airflow tasks read the same drop folder (MLPIPE_DROP_DIR in service_env).
    for day in DAYS:
        drop_orders(stack.drop_path, day)
    since = datetime.now(UTC)
    run_id = client.trigger(
        "ingest_orders",
        {"date_from": DAYS[0].isoformat(), "date_to": DAYS[-1].isoformat()},
    )
    ingest_run = client.wait_for_run("ingest_orders", run_id, timeout=120)
    validate_run = client.wait_for_new_run("validate_orders", since, timeout=120)
    return {"ingest_orders": ingest_run, "validate_orders": validate_run}


def test_ingest_then_validate_succeed(runs):
    assert runs["ingest_orders"]["state"] == "success"
    assert runs["validate_orders"]["state"] == "success"
    assert runs["validate_orders"]["run_type"] == "asset_triggered"


def test_raw_and_validated_batches_hold_every_order(runs, stack):
    expected = {f"date={d.isoformat()}": len(orders_day(d)) for d in DAYS}
    raw = storage.latest_batches("raw", "orders")
    assert {p: m.rows for p, m in raw.items()} == expected
    validated = storage.latest_batches("validated", "orders")
    assert {p: m.rows for p, m in validated.items()} == expected
    batch = validated[f"date={DAYS[0].isoformat()}"]
    assert batch.upstream == [raw[batch.partition].ref]
    assert batch.source.endswith("/orders/2024-03-01.csv")
    report = storage.read_json(batch.extra["validation_report"])
    assert report["success"] is True
    assert any(r["rule"] == "orders.order_id.unique" for r in report["rules"])


def test_unreadable_file_fails_at_once_and_is_kept(runs, stack, client):
    day = date(2024, 3, 3)
    data = orders_csv(day)[:-25]  # cut off mid-row
    (stack.drop_path / "orders" / "2024-03-03.csv").write_bytes(data)
    run_id = client.trigger("ingest_orders", {"date_from": "2024-03-03", "date_to": "2024-03-03"})
    run = client.wait_for_run("ingest_orders", run_id, timeout=120)
    assert run["state"] == "failed"
    ti = {
        (t["task_id"], t["map_index"]): t for t in client.task_instances("ingest_orders", run_id)
    }[("ingest_partitions", 0)]
    assert ti["state"] == "failed"
    assert ti["try_number"] == 1  # the retry policy did not retry an unreadable file
    held = storage.list_batches("quarantine", "orders", "date=2024-03-03")
    assert len(held) == 1 and held[0].extra["reason"] == "csv_truncated"
    stored = storage.filesystem().cat_file(f"{held[0].prefix}/2024-03-03.csv")
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    log = client.task_log("ingest_orders", run_id, "ingest_partitions", map_index=0)
    assert "csv_truncated" in log and held[0].ref in log
    assert "date=2024-03-03" not in storage.latest_batches("raw", "orders")


def test_row_policy_holds_bad_rows_back_and_warns(runs, stack, client):
    """The orders contract says `quarantine_rows` (max 5 % bad) with `on_failure: warn`: a day
    with two bad orders goes on without them; a day with half of them bad is held back whole.
    Both validate runs succeed, with a warning naming the batch, the rule and the report."""
    few, many = date(2024, 3, 4), date(2024, 3, 5)
    drop_orders(stack.drop_path, few, bad_amounts=2)
    half = len(orders_day(many)) // 2
    drop_orders(stack.drop_path, many, bad_amounts=half)
    since = datetime.now(UTC)
    run_id = client.trigger("ingest_orders", {"date_from": "2024-03-04", "date_to": "2024-03-05"})
    assert client.wait_for_run("ingest_orders", run_id, timeout=120)["state"] == "success"
    run = client.wait_for_new_run("validate_orders", since, timeout=120)
    assert run["state"] == "success"
    raw = storage.latest_batches("raw", "orders")
    validated = storage.latest_batches("validated", "orders")

    # two bad rows: held back with the rule each broke; the rest validated
    p = f"date={few.isoformat()}"
    kept = validated[p]
    assert kept.upstream == [raw[p].ref] and kept.rows == raw[p].rows - 2
    (held,) = storage.list_batches("quarantine", "orders", p)
    rows = storage.read_batch(held)
    assert len(rows) == 2 and (rows["amount"] == -5.0).all()
    assert [list(r) for r in rows["_failed_rules"]] == [["orders.amount.min"]] * 2
    assert (storage.read_batch(kept)["amount"] > 0).all()

    # half bad: over max_bad_fraction, the whole day is held back, nothing validated
    p = f"date={many.isoformat()}"
    assert p not in validated
    (whole,) = storage.list_batches("quarantine", "orders", p)
    assert whole.rows == raw[p].rows and "over max_bad_fraction" in whole.extra["quarantine_reason"]

    # Both days are one chunk (a month of days per task): one task validated them, each on its own.
    warned = client.task_log("validate_orders", run["dag_run_id"], "validate", map_index=0)
    assert whole.ref in warned
    assert "orders.amount.min" in warned and "on_failure: warn" in warned
    assert whole.extra["validation_report"] in warned
