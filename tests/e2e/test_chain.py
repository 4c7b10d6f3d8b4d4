"""The real Airflow services run the whole chain, triggered through the REST API."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

import pytest

from ml import lineage, registry, storage, tracking
from ml.dev.airflow_api import AirflowClient
from ml.model_versions import CHAMPION, alias_version

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def since(chains) -> datetime:
    return chains.since


@pytest.fixture(scope="module")
def runs(chains) -> dict[str, dict]:
    # Four ingest+validate chains (flights, weather, planes, airports) share the executor with
    # the target kinds' chains (tests/e2e/conftest.py CHAINS).
    return chains.runs["flights"]


def asset_runs(client: AirflowClient, dag_id: str, since: datetime) -> list[dict]:
    return [r for r in client.runs_since(dag_id, since) if r["run_type"] == "asset_triggered"]


def test_every_dag_of_the_chain_succeeded(runs):
    states = {dag_id: run["state"] for dag_id, run in runs.items()}
    assert set(states) == {
        "ingest_flights",
        "ingest_weather",
        "ingest_planes",
        "ingest_airports",
        "validate_flights",
        "validate_weather",
        "validate_planes",
        "validate_airports",
        "preprocess_flights",
        "train_flights",
        "promote_flights",
        "batch_score_flights",
    }
    assert set(states.values()) == {"success"}, states
    # Everything after ingestion was started by asset events, not by hand.
    for dag_id in (
        "validate_flights",
        "preprocess_flights",
        "train_flights",
        "promote_flights",
        "batch_score_flights",
    ):
        assert runs[dag_id]["run_type"] == "asset_triggered", (dag_id, runs[dag_id]["run_type"])


def test_raw_batches_are_committed_and_validated(runs, stack):
    raw = storage.latest_batches("raw", "flights")
    assert sorted(raw) == [f"date=2013-01-0{d}" for d in range(1, 8)]
    first = raw["date=2013-01-01"]
    assert first.rows == 842 and first.contract_hash and first.parts
    validated = storage.latest_batches("validated", "flights")
    assert {p: m.rows for p, m in validated.items()} == {p: m.rows for p, m in raw.items()}
    report = storage.read_json(validated["date=2013-01-01"].extra["validation_report"])
    assert report["success"] is True and report["rules"]


def test_features_model_and_predictions(runs, stack):
    fs = storage.filesystem()
    feature_sets = fs.glob(f"{stack.bucket('features')}/flights/*/_manifest.json")
    assert len(feature_sets) == 1
    version = alias_version("flights_delay", CHAMPION)
    assert version is not None
    mv = tracking.client().get_model_version("flights_delay", version)
    assert float(mv.tags["test_roc_auc"]) > 0.5
    assert mv.tags["promotion.promoted"] == "True"
    predictions = storage.list_batches("predictions", "flights")
    assert len(predictions) == 1
    batch = predictions[0]
    assert batch.partition == "date=2013-01-07"
    assert batch.extra["model_version"] == version
    rows = storage.read_batch(batch)
    assert len(rows) == storage.latest_batches("validated", "flights")["date=2013-01-07"].rows
    assert (rows["model_version"] == version).all()


def test_promotion_audit_and_lineage_of_the_chain(runs, stack):
    log = registry.history("flights_delay")
    assert [r["action"] for r in log] == ["promote"]
    assert log[0]["reason"] == "no champion yet" and log[0]["eval_snapshot_hash"]
    batch = storage.list_batches("predictions", "flights")[0]
    up = lineage.upstream(batch.ref)
    assert up["model"]["version"] == log[0]["version"]
    raws = [r["ref"] for b in up["scored_batches"] for r in b["raw"]]
    assert any(r.startswith("s3://raw/flights/date=2013-01-07/") for r in raws)
    down = lineage.downstream(next(r for r in raws if "/flights/" in r))
    assert batch.ref in [p["ref"] for p in down["predictions"]]


def test_alias_moves_score_exactly_once_and_rollback_scores_again(runs, stack, since):
    client = AirflowClient(stack.airflow_api_url)
    # The chain's promotion started exactly one scoring run.
    assert len(asset_runs(client, "batch_score_flights", since)) == 1
    first = alias_version("flights_delay", CHAMPION)
    # A person force-promotes another version (same weights) through the promote DAG's Params.
    mlflow_client = tracking.client()
    copy = mlflow_client.copy_model_version(f"models:/flights_delay/{first}", "flights_delay")
    for key, value in mlflow_client.get_model_version("flights_delay", first).tags.items():
        if not key.startswith("promotion."):
            mlflow_client.set_model_version_tag("flights_delay", copy.version, key, value)
    second = str(copy.version)
    run_id = client.trigger("promote_flights", {"model_version": second, "force": True})
    run = client.wait_for_run("promote_flights", run_id, 300)
    assert run["state"] == "success"
    assert alias_version("flights_delay", CHAMPION) == second
    record = registry.history("flights_delay")[-1]
    # who asked is the Airflow user who triggered the run, not a field anyone can fill
    assert run["triggering_user_name"] and record["by"] == run["triggering_user_name"]
    assert record["forced"]
    scoring = _nth_asset_run(client, since, 2)
    assert scoring["state"] == "success"

    # Rollback from its DAG's form: champion back in one step, audited with the user, and the
    # champion asset event scores again.
    run_id = client.trigger("rollback_flights", {"reason": "e2e: back to the first"})
    run = client.wait_for_run("rollback_flights", run_id, 300)
    assert run["state"] == "success"
    assert alias_version("flights_delay", CHAMPION) == first
    record = registry.history("flights_delay")[-1]
    assert record["by"] == run["triggering_user_name"]
    assert record["reason"] == "e2e: back to the first"
    assert _nth_asset_run(client, since, 3)["state"] == "success"
    assert [r["action"] for r in registry.history("flights_delay")] == [
        "promote",
        "promote",
        "rollback",
    ]
    storage.filesystem().invalidate_cache()  # this process listed the day before v2 scored it
    versions = {
        m.extra["model_version"]
        for m in storage.list_batches("predictions", "flights")
        if m.partition == "date=2013-01-07"
    }
    assert versions == {first, second}  # each alias move scored the day once, by its version


def _nth_asset_run(client: AirflowClient, since: datetime, n: int, timeout: float = 300):
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = asset_runs(client, "batch_score_flights", since)
        if len(found) >= n:
            return client.wait_for_run(
                "batch_score_flights",
                found[n - 1]["dag_run_id"],
                max(deadline - time.monotonic(), 1),
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(found)} asset-triggered scoring runs, wanted {n}")
        time.sleep(2)


def test_a_late_scoring_run_raises_its_deadline_alert(runs, alert_receiver):
    """The stack's scoring deadline is 5 s (conftest): the triggerer ran the deadline's callback,
    which reached the alert webhook naming the run."""
    run_id = runs["batch_score_flights"]["dag_run_id"]
    alert = alert_receiver.wait_for(
        lambda a: a["title"] == f"deadline missed: batch_score_flights run {run_id}"
    )
    assert "predictions of flights not done by" in alert["text"]
    assert alert["fields"]["url"].endswith(
        f"/dags/batch_score_flights/runs/{quote(run_id, safe='')}"
    )


def test_the_chains_task_logs_hold_no_error_lines(runs, stack):
    """A clean run's logs show no ERROR that is not a problem (library INFO on stderr, progress
    bars), so a real failure stands out."""
    client = AirflowClient(stack.airflow_api_url)
    errors = []
    for dag_id, run in runs.items():
        for ti in client.task_instances(dag_id, run["dag_run_id"]):
            if ti["state"] != "success":
                continue
            for record in client.task_log_records(
                dag_id, run["dag_run_id"], ti["task_id"], ti["try_number"], ti["map_index"]
            ):
                if str(record.get("level", "")).lower() in ("error", "critical"):
                    errors.append(f"{dag_id}.{ti['task_id']}: {record.get('event', '')[:200]}")
    assert not errors, "\n".join(errors[:40])
