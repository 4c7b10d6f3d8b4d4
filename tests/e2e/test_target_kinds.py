"""The reference contracts of the other target kinds, onboarded by their contracts alone
(`data_contracts/flights_delay_minutes.yaml`: regression; `flights_delay_class.yaml`: multiclass),
run ingest -> validate -> preprocess -> train -> promote -> score through the real Airflow
services over a week of the real 2013 flights."""

from __future__ import annotations

import numpy as np
import pytest

from ml import contracts, registry, storage, tracking
from ml.dev import demo
from ml.dev.airflow_api import AirflowClient
from ml.model_versions import CHAMPION, alias_version

pytestmark = pytest.mark.e2e

KINDS = {"flights_delay_minutes": "regression", "flights_delay_class": "multiclass"}


@pytest.fixture(scope="module")
def runs(chains) -> dict[str, dict]:
    """Their chains, run with the flights chain (tests/e2e/conftest.py CHAINS); flights_delay_class
    asks for a person's approval of each promotion: its client gave it."""
    return {dataset: chains.runs[dataset] for dataset in KINDS}


@pytest.mark.parametrize("dataset", sorted(KINDS))
def test_every_stage_of_the_chain_succeeded(runs, dataset):
    states = {dag_id: run["state"] for dag_id, run in runs[dataset].items()}
    assert set(states) == set(demo.chain_dag_ids(dataset).values())
    assert set(states.values()) == {"success"}, states
    for stage in ("validate", "preprocess", "train", "promote", "batch_score"):
        dag_id = f"{stage}_{dataset}"
        assert runs[dataset][dag_id]["run_type"] == "asset_triggered", dag_id


def _champion_and_predictions(dataset: str):
    model_name = contracts.load_contract(dataset).model_name
    version = alias_version(model_name, CHAMPION)
    assert version is not None
    tags = tracking.client().get_model_version(model_name, version).tags
    assert tags["promotion.promoted"] == "True"
    assert [r["action"] for r in registry.history(model_name)] == ["promote"]
    batches = storage.list_batches("predictions", dataset)
    assert len(batches) == 1 and batches[0].extra["model_version"] == version
    rows = storage.read_batch(batches[0])
    validated = storage.latest_batches("validated", dataset)[batches[0].partition]
    assert len(rows) == validated.rows  # every row scored, cancelled flights too
    assert (rows["model_version"] == version).all()
    return tags, rows


def test_regression_champion_predicts_minutes(runs, stack):
    tags, rows = _champion_and_predictions("flights_delay_minutes")
    assert {"test_rmse", "test_mae", "test_r2"} <= set(tags)
    assert float(tags["test_rmse"]) > 0 and "test_roc_auc" not in tags
    assert {"prediction", "model_version"} <= set(rows.columns)
    assert not {"probability", "label"} & set(rows.columns)
    assert rows["prediction"].notna().all() and rows["prediction"].std() > 0


def test_multiclass_champion_gives_a_probability_per_class(runs, stack):
    tags, rows = _champion_and_predictions("flights_delay_class")
    assert {"test_macro_f1", "test_log_loss", "test_ovr_auc"} <= set(tags)
    classes = ["on_time", "short", "long"]
    columns = [f"probability_{c}" for c in classes]
    assert set(columns) | {"predicted_class"} <= set(rows.columns)
    assert np.allclose(rows[columns].sum(axis=1), 1.0, atol=1e-6)
    assert set(rows["predicted_class"]) <= set(classes)


def test_a_promotion_that_needs_approval_waits_for_a_person_and_names_them(runs, stack):
    """`model.approval: required`: evaluate shows the decision, the approval is a person's
    (Airflow's human-in-the-loop, answered through the REST API as the e2e user), and the
    audit record and the version's tags name who approved."""
    client = AirflowClient(stack.airflow_api_url)
    run_id = runs["flights_delay_class"]["promote_flights_delay_class"]["dag_run_id"]
    states = {
        t["task_id"]: t["state"]
        for t in client.task_instances("promote_flights_delay_class", run_id)
    }
    assert states == {"evaluate": "success", "approve": "success", "promote": "success"}
    detail = client.hitl_detail("promote_flights_delay_class", run_id, "approve")
    assert detail["chosen_options"] == ["Approve"]
    assert "macro_f1" in detail["body"] and detail["subject"].startswith("Promote")
    who = detail["responded_by_user"]["name"]
    record = registry.history("flights_delay_class")[-1]
    assert record["action"] == "promote" and record["approved_by"] == who
    version = alias_version("flights_delay_class", CHAMPION)
    tags = tracking.client().get_model_version("flights_delay_class", version).tags
    assert tags["promotion.approved_by"] == who
