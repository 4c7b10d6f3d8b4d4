"""The stages in order on real servers: S3 API server, Dask cluster, MLflow server (no Airflow)."""

from __future__ import annotations

import pandas as pd
import pytest

from ml import ingest, registry, score, storage, tracking
from ml.features import build, sets
from ml.features.derived import TARGET
from ml.model_versions import CHALLENGER, CHAMPION, alias_version
from ml.promotion_rule import DecisionRule
from ml.training.run import train
from ml.validation.batch import validate_batch

pytestmark = pytest.mark.integration

DAYS = ingest.days_between("2013-01-01", "2013-01-07")


@pytest.fixture(scope="module")
def validated(s3_server):
    refs = {}
    for dataset in ("flights", "weather"):
        for day in DAYS:
            raw = ingest.ingest_partition(dataset, day)
            refs[(dataset, day)] = validate_batch(raw.ref, dataset).manifest.ref
    for dataset in ("planes", "airports"):  # snapshot lookup tables: the whole table once
        raw = ingest.ingest_partition(dataset, DAYS[-1])
        refs[(dataset, None)] = validate_batch(raw.ref, dataset).manifest.ref
    return refs


def test_reingesting_unchanged_days_writes_nothing(validated):
    before = storage.list_batches("raw", "flights")
    again = ingest.ingest_partition("flights", DAYS[0])
    assert again.new is False
    assert storage.list_batches("raw", "flights") == before


def test_features_train_promote_score(validated, dask_cluster, mlflow_server):
    fs = build.build_features("flights")
    assert fs.reused is False
    split = fs.manifest["splits"]
    assert (
        max(split["train"])
        < min(split["validation"])
        <= max(split["validation"])
        < min(split["test"])
    )
    assert fs.rows["train"] > 3000 and fs.rows["test"] > 500
    assert build.build_features("flights").reused is True  # same inputs: nothing recomputed

    test_rows = sets.read_split(fs.manifest, "test")
    assert test_rows[TARGET].isin([0, 1]).all()
    assert {f"num__{c}" for c in fs.manifest["numeric"]} <= set(test_rows.columns)

    good = train(fs.ref, {"epochs": 3})
    assert good.metrics["test_roc_auc"] > 0.55  # better than chance on real flights
    client = tracking.client()
    mv = client.get_model_version(good.model_name, good.version)
    assert mv.tags["feature_version"] == fs.feature_version
    assert alias_version(good.model_name, CHALLENGER) == good.version

    first = registry.promote(good.model_name, good.version, good.eval_snapshot)
    assert first.promoted and first.reason == "no champion yet"
    assert alias_version(good.model_name, CHALLENGER) is None
    assert storage.read_json(first.audit_record)["version"] == good.version

    # A barely trained challenger must not take the title; the reason is recorded.
    worse = train(fs.ref, {"epochs": 1, "learning_rate": 1e-7, "seed": 7})
    second = registry.promote(
        worse.model_name,
        worse.version,
        worse.eval_snapshot,
        DecisionRule(min_improvement=0.01),
    )
    assert not second.promoted
    assert alias_version(good.model_name, CHALLENGER) == worse.version
    assert "does not beat champion" in second.reason
    assert alias_version(good.model_name, CHAMPION) == good.version
    tags = client.get_model_version(worse.model_name, worse.version).tags
    assert tags["promotion.promoted"] == "False"

    result = score.score("flights")
    assert result.partition == f"date={DAYS[-1]}" and result.version == good.version
    manifest = storage.read_manifest(result.ref)
    predictions = storage.read_batch(manifest)
    day_rows = storage.latest_batches("validated", "flights")[result.partition].rows
    assert len(predictions) == manifest.rows == day_rows
    assert (predictions["model_version"] == good.version).all()
    assert predictions["probability"].between(0, 1).all()
    assert manifest.extra["model_version"] == good.version
    assert validated[("flights", DAYS[-1])] in manifest.upstream
    assert manifest.extra["drift_report"] == result.drift_report

    # Re-scoring the same day with the same version replaces the output, never duplicates it.
    again = score.score("flights", DAYS[-1])
    assert again.ref == result.ref
    assert len(storage.read_batch(storage.read_manifest(again.ref))) == day_rows

    # The registered model takes raw joined rows and applies the transform it was trained with.
    # (Loaded as the pipeline loads it: a plain `mlflow.pyfunc.load_model` leaves the model's
    # partial copy of `ml` first on sys.path, and Dask workers spawned later by this process
    # import it: test_policies' worker died on `No module named 'ml.features.build'`.)
    model = tracking.load_model(f"models:/{good.model_name}@champion")
    eval_rows = pd.read_parquet(
        good.eval_snapshot, storage_options=storage.get_settings().s3_storage_options()
    )
    out = model.predict(eval_rows.drop(columns=[TARGET]))
    assert len(out) == len(eval_rows) and out["probability"].between(0, 1).all()
