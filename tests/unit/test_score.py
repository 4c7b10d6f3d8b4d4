"""Batch scoring's pieces that need no servers: where the predictions contract lives, and what
every partition of a run is scored with."""

from __future__ import annotations

import pytest

from ml import contracts
from ml.score import PREDICTIONS_CONTRACT, ScoringContext
from ml.validation.rules import rule_ids

pytestmark = pytest.mark.unit


def test_the_predictions_contract_is_not_a_dataset_to_ingest():
    assert PREDICTIONS_CONTRACT.parent.parent == contracts.CONTRACTS_DIR
    assert "predictions" not in contracts.available_datasets()
    contract = contracts.load_contract(PREDICTIONS_CONTRACT)
    assert not contract.source
    assert {
        "predictions.probability.min",
        "predictions.probability.max",
        "predictions.label.not_null",
        "predictions.model_version.regex",
    } <= set(rule_ids(contract))


def test_a_run_scores_with_one_version_uri_and_names_its_batches_by_it():
    contract = contracts.load_contract("flights")
    ctx = ScoringContext(
        contract=contract,
        model_name="flights_delay",
        version="7",
        threshold=0.5,
        drift_threshold=0.2,
        transform=None,
        profile={},
    )
    assert ctx.dataset == "flights"
    assert ctx.model_uri == "models:/flights_delay/7"  # a version, never the alias
    assert ctx.batch_id == "model-7"


def test_a_skipped_day_is_left_pending_and_the_others_are_scored(monkeypatch):
    """`missing: skip_day` at scoring: the day without its join is not scored (it stays
    pending); the run goes on with the other days; asked for alone, it says so."""
    import contextlib

    from ml import score
    from ml.features.inputs import PartitionSkipped

    def score_one(ctx, partition):
        if partition == "date=2013-12-31":
            raise PartitionSkipped("join flights -> weather: no validated weather batch")
        return partition

    monkeypatch.setattr(score.ScoringContext, "load", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(score, "dask_client", contextlib.nullcontext)
    monkeypatch.setattr(score, "_score_one", score_one)
    days = ["date=2013-12-30", "date=2013-12-31"]
    assert score.score_partitions("flights", days, version="1") == ["date=2013-12-30"]
    with pytest.raises(PartitionSkipped):
        score.score("flights", "2013-12-31", version="1")


def test_the_output_contract_follows_the_target_kind():
    from ml.score import predictions_contract

    binary = predictions_contract(contracts.load_contract("flights").target)
    assert [c.name for c in binary.columns] == ["probability", "label", "model_version"]
    multi = predictions_contract(contracts.load_contract("flights_delay_class").target)
    assert [c.name for c in multi.columns] == [
        "probability_on_time",
        "probability_short",
        "probability_long",
        "predicted_class",
        "model_version",
    ]
    assert {"predictions_multiclass.probability_long.max"} <= set(rule_ids(multi))
    regression = predictions_contract(contracts.load_contract("flights_delay_minutes").target)
    assert [c.name for c in regression.columns] == ["prediction", "model_version"]
    assert len({binary.hash, multi.hash, regression.hash}) == 3


def test_a_partition_gets_the_columns_of_its_kind(monkeypatch):
    import pandas as pd

    from ml import score

    class Model:
        def predict(self, df):
            return pd.DataFrame(
                {"prediction": [1.5] * len(df), "extra": [0] * len(df)}, index=df.index
            )

    monkeypatch.setattr(score, "_load_model", lambda uri, tracking: Model())
    rows = pd.DataFrame({"key": [1, 2]})
    out = score.predict_partition(rows, "m", "t", "3", 0.5, ["key"], {"prediction": "float64"})
    assert list(out.columns) == ["key", "prediction", "model_version"]  # no label, no extra
    empty = score.predict_partition(rows.iloc[:0], "m", "t", "3", 0.5, ["key"], {"x": "string"})
    assert list(empty.columns) == ["key", "x", "model_version"] and empty["x"].dtype == "string"
