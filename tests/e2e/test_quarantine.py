"""A batch that breaks its contract, run through the real Airflow services: held back, reported."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ml import storage
from ml.dev.airflow_api import AirflowClient
from ml.sources.nycflights13 import nycflights13_rows

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bad_batch(stack) -> str:
    """A real day of flights with three impossible departure delays, committed to `raw`."""
    from datetime import date

    df = nycflights13_rows("flights", date(2013, 2, 1))
    df.loc[:2, "dep_delay"] = 5000.0
    return storage.write_batch(
        df, "raw", "flights", "date=2013-02-01", source="e2e: planted violation"
    ).ref


def test_bad_batch_is_quarantined_and_its_run_fails_naming_the_rule(
    stack, bad_batch, alert_receiver
):
    client = AirflowClient(stack.airflow_api_url)
    since = datetime.now(UTC)
    client.create_asset_event("s3://raw/flights", {"batches": [bad_batch]})
    run = client.wait_for_new_run("validate_flights", since, timeout=180)
    assert run["state"] == "failed"

    tasks = {
        (t["task_id"], t["map_index"]): t
        for t in client.task_instances("validate_flights", run["dag_run_id"])
    }
    assert tasks[("validate", 0)]["state"] == "failed"
    assert tasks[("publish", -1)]["state"] == "skipped"  # nothing flows on
    log = client.task_log("validate_flights", run["dag_run_id"], "validate", map_index=0)
    assert "flights.dep_delay.max" in log
    assert bad_batch in log

    held = storage.read_manifest(storage.ref_in_zone(bad_batch, "quarantine"))
    assert held.rows == storage.read_manifest(bad_batch).rows  # the whole batch, nothing lost
    report = storage.read_json(held.file_url("_report.json"))
    failed = {r["rule"]: r for r in report["rules"] if not r["success"]}
    assert failed["flights.dep_delay.max"]["unexpected_count"] == 3
    with pytest.raises(storage.BatchNotFoundError):
        storage.read_manifest(storage.ref_in_zone(bad_batch, "validated"))

    # People are told: the failed task's alert reached the webhook, with the rule and a link.
    alert = alert_receiver.wait_for(
        lambda a: (
            a["fields"].get("run_id") == run["dag_run_id"]
            and a["fields"].get("task_id") == "validate"
        )
    )
    assert alert["title"] == "validate_flights.validate failed"
    assert "flights.dep_delay.max" in alert["text"]
    assert alert["fields"]["url"].endswith("/tasks/validate/mapped/0")


def test_a_person_drops_the_held_batch_from_its_dag_form(stack, bad_batch):
    """`quarantine_flights` with its defaults lists what is held; Drop marks the batch dropped
    (nothing deleted), and the record names the Airflow user who triggered the run."""
    client = AirflowClient(stack.airflow_api_url)
    held_ref = storage.ref_in_zone(bad_batch, "quarantine")
    listed = client.trigger("quarantine_flights")
    assert client.wait_for_run("quarantine_flights", listed, 180)["state"] == "success"
    held = client.xcom("quarantine_flights", listed, "act")["held"]
    assert held_ref in [item["ref"] for item in held]

    # release/drop without a batch is refused at once, naming the Param
    refused = client.trigger("quarantine_flights", {"action": "drop"})
    assert client.wait_for_run("quarantine_flights", refused, 180)["state"] == "failed"

    run_id = client.trigger(
        "quarantine_flights", {"action": "drop", "batch": held_ref, "note": "e2e: planted"}
    )
    run = client.wait_for_run("quarantine_flights", run_id, 180)
    assert run["state"] == "success"
    record = client.xcom("quarantine_flights", run_id, "act")
    assert record["action"] == "drop" and record["reason"] == "e2e: planted"
    assert record["by"] == run["triggering_user_name"]
    assert storage.read_manifest(held_ref).rows  # nothing deleted
