"""Contracts partitioned by month and by hour, onboarded by a contract alone
(tests/data/contracts/monthly_sales.yaml, hourly_load.yaml): ingest -> validate -> preprocess
-> train on real servers (S3 API, Dask, MLflow). Month partitions come one file a month
(`{year}-{month}.csv`); hour partitions are split out of one history file at ingest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import contracts, ingest, storage
from ml.features import build, sets
from ml.training.run import train
from ml.validation.batch import validate_batch
from tests.conftest import pipeline_environment

pytestmark = pytest.mark.integration

CONTRACTS = Path(__file__).resolve().parents[1] / "data" / "contracts"
MONTHS = ["2023-01", "2023-02", "2023-03", "2023-04", "2023-05", "2023-06"]
HOUR_DAY = "2023-07-01"


def sales() -> pd.DataFrame:
    """A row a day per store: units fall with price (units > 50: the target)."""
    rng = np.random.default_rng(11)
    days = pd.date_range("2023-01-01", "2023-06-30", freq="D", tz="UTC")
    rows = []
    for day in days:
        for store in ("north", "south", "west"):
            price = float(rng.uniform(5, 95))
            units = max(0.0, 100 - price + rng.normal(0, 8))
            rows.append({"sold_at": day, "store": store, "price": round(price, 2), "units": units})
    return pd.DataFrame(rows)


def load() -> pd.DataFrame:
    """Every five minutes of one day, per machine: the load follows the temperature."""
    rng = np.random.default_rng(5)
    times = pd.date_range(f"{HOUR_DAY}T00:00Z", periods=24 * 12, freq="5min")
    rows = []
    for t in times:
        for machine in ("a", "b", "c"):
            temp = float(rng.uniform(10, 90))
            busy = min(100.0, max(0.0, temp + rng.normal(0, 6)))
            rows.append({"measured_at": t, "machine": machine, "temp": temp, "load": busy})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def onboarded(s3_server, tmp_path_factory):
    """Both test contracts in a contracts folder of their own, their files in a drop folder."""
    folder = tmp_path_factory.mktemp("granularity")
    for name in ("monthly_sales", "hourly_load"):
        shutil.copy(CONTRACTS / f"{name}.yaml", folder / f"{name}.yaml")
    drop = folder / "drop"
    frame = sales()
    (drop / "monthly_sales").mkdir(parents=True)
    for month in MONTHS:
        rows = frame[frame["sold_at"].dt.strftime("%Y-%m") == month].copy()
        rows["sold_at"] = rows["sold_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.to_csv(drop / "monthly_sales" / f"{month}.csv", index=False)
    history = load()
    history["measured_at"] = history["measured_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    (drop / "hourly_load" / "history").mkdir(parents=True)
    history.to_csv(drop / "hourly_load" / "history" / "2023-07.csv", index=False)
    with (
        pytest.MonkeyPatch.context() as mp,
        pipeline_environment({"MLPIPE_DROP_DIR": str(drop)}),
    ):
        mp.setattr(contracts, "CONTRACTS_DIR", folder)
        yield


def _ingest_and_validate(dataset: str, keys: list[str]) -> list[str]:
    outcomes = ingest.ingest_partitions(dataset, keys)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    for o in outcomes:
        checked = validate_batch(o.result.ref, dataset)
        assert checked.status == "passed", checked.reason
    return [storage.parse_ref(o.result.ref)[2] for o in outcomes]


def test_a_month_contract_ingests_validates_and_trains(onboarded, dask_cluster, mlflow_server):
    keys = ingest.plan_partitions("monthly_sales", "2023-01-15", "2023-06-30")
    assert keys == MONTHS  # every month the range touches
    names = _ingest_and_validate("monthly_sales", keys)
    assert names == [f"month={m}" for m in MONTHS]
    batch = storage.latest_batches("validated", "monthly_sales")["month=2023-02"]
    assert batch.rows == 28 * 3

    built = build.build_features("monthly_sales", "2023-01-01", "2023-06-30")
    splits = built.manifest["splits"]
    assert splits["train"] == [f"month={m}" for m in MONTHS[:4]]  # train before validation
    assert (splits["validation"], splits["test"]) == (["month=2023-05"], ["month=2023-06"])
    validated = storage.latest_batches("validated", "monthly_sales")
    train_rows = sets.read_split(sets.read_feature_manifest(built.ref), "train")
    assert len(train_rows) == sum(validated[f"month={m}"].rows for m in MONTHS[:4])
    result = train(built.ref, {"epochs": 3, "batch_size": 64})
    assert result.metrics["test_roc_auc"] > 0.7


def test_an_hour_contract_ingests_a_history_file_validates_and_trains(
    onboarded, dask_cluster, mlflow_server
):
    keys = ingest.plan_partitions("hourly_load", HOUR_DAY, HOUR_DAY)
    assert keys == [f"{HOUR_DAY}T{h:02d}" for h in range(24)]
    names = _ingest_and_validate("hourly_load", keys)
    assert names == [f"hour={k}" for k in keys]
    assert storage.latest_batches("validated", "hourly_load")[f"hour={HOUR_DAY}T13"].rows == 36

    built = build.build_features("hourly_load", HOUR_DAY, HOUR_DAY)
    splits = built.manifest["splits"]
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [14, 5, 5]
    assert max(splits["train"]) < min(splits["validation"]) <= max(splits["validation"])
    assert max(splits["validation"]) < min(splits["test"])
    result = train(built.ref, {"epochs": 3, "batch_size": 64})
    assert result.metrics["test_roc_auc"] > 0.7
