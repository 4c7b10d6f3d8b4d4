"""The real Airflow services run the whole chain, triggered through the REST API."""

from __future__ import annotations

import pytest

from ml import demo, registry, storage
from ml.airflow_api import AirflowClient

pytestmark = pytest.mark.e2e

DATE_FROM, DATE_TO = "2013-01-01", "2013-01-07"


@pytest.fixture(scope="module")
def runs(stack):
    client = AirflowClient(stack.airflow_api_url)
    # Four ingest+validate chains (flights, weather, planes, airports) share the executor.
    return demo.run_chain(client, "flights", DATE_FROM, DATE_TO, timeout=900)


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
        "batch_score_flights",
    }
    assert set(states.values()) == {"success"}, states
    # Everything after ingestion was started by asset events, not by hand.
    for dag_id in (
        "validate_flights",
        "preprocess_flights",
        "train_flights",
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
    version = registry.alias_version("flights_delay", registry.CHAMPION)
    assert version is not None
    mv = registry.client().get_model_version("flights_delay", version)
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
