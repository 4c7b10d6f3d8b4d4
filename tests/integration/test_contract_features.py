"""A dataset onboarded by a contract alone (tests/data/contracts/daily_keys.yaml) with one
timestamp column, lag features, derived features, and columns named like our own layout keys
(`date`, `hour`, `month`, `model`, `part`): ingest -> validate -> preprocess -> train ->
promote -> score on real servers (S3 API, Dask, MLflow). No lag reads a later day."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import contracts, ingest, registry, score, score_select, storage
from ml.features import build, sets
from ml.training.run import train
from ml.validation.batch import validate_batch
from tests.conftest import pipeline_environment

pytestmark = pytest.mark.integration

DATASET = "daily_keys"
CONTRACT = Path(__file__).resolve().parents[1] / "data" / "contracts" / f"{DATASET}.yaml"
DAYS = ingest.days_between("2024-03-01", "2024-03-18")
NEW_DAY = "2024-03-19"  # arrives after training: scored with its lags read from earlier days
MODELS = ("a", "b", "c")


def series() -> pd.DataFrame:
    """Hourly load per model over every day: an AR(1) around 50 per (hour, model), so
    yesterday's load at the same hour says much about today's (load > 50: the target)."""
    rng = np.random.default_rng(7)
    days = [*DAYS, NEW_DAY]
    rows = []
    level = {(h, m): rng.normal(50, 15) for h in range(24) for m in MODELS}
    for day in days:
        for h in range(24):
            for m in MODELS:
                level[(h, m)] = 50 + 0.85 * (level[(h, m)] - 50) + rng.normal(0, 6)
                rows.append(
                    {
                        "date": pd.Timestamp(f"{day}T{h:02d}:00:00Z"),
                        "hour": h,
                        "month": int(day[5:7]),
                        "model": m,
                        "part": "am" if h < 12 else "pm",
                        "load": round(level[(h, m)], 3),
                    }
                )
    return pd.DataFrame(rows)


def drop_day(folder: Path, frame: pd.DataFrame, day: str) -> None:
    rows = frame[frame["date"].dt.date == date.fromisoformat(day)].copy()
    rows["date"] = rows["date"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    (folder / DATASET).mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / DATASET / f"{day}.csv", index=False)


@pytest.fixture(scope="module")
def onboarded(s3_server, tmp_path_factory):
    """The test contract in a contracts folder of its own, its files in a drop folder, every
    day of DAYS ingested and validated."""
    folder = tmp_path_factory.mktemp("daily_keys")
    shutil.copy(CONTRACT, folder / CONTRACT.name)
    frame = series()
    for day in [*DAYS, NEW_DAY]:
        drop_day(folder / "drop", frame, day)
    with (
        pytest.MonkeyPatch.context() as mp,
        pipeline_environment({"MLPIPE_DROP_DIR": str(folder / "drop")}),
    ):
        mp.setattr(contracts, "CONTRACTS_DIR", folder)
        for day in DAYS:
            raw = ingest.ingest_partition(DATASET, day)
            validate_batch(raw.ref, DATASET)
        yield frame


@pytest.fixture(scope="module")
def features(onboarded, dask_cluster):
    return build.build_features(DATASET)


def test_a_manual_training_run_takes_the_newest_feature_set(features):
    """What `train_<dataset>` trains on when triggered with the form's defaults."""
    from ml.errors import NotFoundError

    assert sets.newest_feature_set(DATASET) == features.ref
    with pytest.raises(NotFoundError, match="run preprocess_nothing_here first"):
        sets.newest_feature_set("nothing_here")


def test_layout_key_columns_survive_ingest_and_validate(onboarded):
    batch = storage.latest_batches("validated", DATASET)[f"date={DAYS[0]}"]
    rows = storage.read_batch(batch)
    assert list(rows.columns) == ["date", "hour", "month", "model", "part", "load"]
    assert str(rows["date"].dtype).startswith("datetime64") and len(rows) == 72
    assert set(rows["model"]) == set(MODELS)


def test_lags_read_the_day_before_and_never_a_later_day(onboarded, features):
    manifest = features.manifest
    assert manifest["numeric"][:3] == ["load_1d", "load_7d", "model_mean_1d"]
    truth = onboarded.assign(day=onboarded["date"].dt.strftime("%Y-%m-%d"))
    by_key = truth.set_index(["day", "hour", "model"])["load"]
    snapshot = pd.read_parquet(
        manifest["eval_snapshot"], storage_options=storage.filesystem().storage_options
    )
    assert {"date", "hour", "month", "model", "part", "load_1d", "load_7d"} <= set(snapshot)
    assert "__partition__" not in snapshot.columns
    days = snapshot["date"].dt.strftime("%Y-%m-%d")
    for lag, n in (("load_1d", 1), ("load_7d", 7)):
        before = (pd.to_datetime(days) - pd.Timedelta(days=n)).dt.strftime("%Y-%m-%d")
        want = [
            by_key.get((d, h, m), np.nan)
            for d, h, m in zip(before, snapshot.hour, snapshot.model, strict=True)
        ]
        np.testing.assert_allclose(snapshot[lag].to_numpy("float64"), want)
        # The value a lag holds is found on an earlier day of the same key, never the row's own
        # day or a later one.
        for (d, h, m), value in zip(
            zip(days, snapshot.hour, snapshot.model, strict=True), snapshot[lag], strict=True
        ):
            if np.isnan(value):
                continue
            same = truth[(truth.hour == h) & (truth.model == m) & np.isclose(truth.load, value)]
            assert (same["day"] < d).all() and len(same)
    # The first day of the window has no day before it: missing, then imputed.
    train = sets.read_split(manifest, "train")
    assert train["date"].min().strftime("%Y-%m-%d") == DAYS[0]
    first = sets.read_split(manifest, "train")
    assert first.filter(like="num__load_1d").notna().all().all()


def test_train_promote_and_score_a_new_day(onboarded, features, mlflow_server):
    result = train(features.ref, {"epochs": 4, "batch_size": 256})
    assert result.metrics["test_roc_auc"] > 0.7  # yesterday's load says much about today's
    decision = registry.promote(result.model_name, result.version, result.eval_snapshot)
    assert decision.promoted
    raw = ingest.ingest_partition(DATASET, NEW_DAY)
    validate_batch(raw.ref, DATASET)
    scored = score.score(DATASET, NEW_DAY, version=result.version)
    manifest = storage.read_manifest(scored.ref)
    rows = storage.read_batch(manifest)
    assert len(rows) == 72 == scored.rows
    assert list(rows.columns[:5]) == ["date", "hour", "month", "model", "part"]
    assert rows["probability"].between(0, 1).all()
    # The lag read yesterday's validated batch: in the lineage, and yesterday stays unscored.
    validated = storage.latest_batches("validated", DATASET)
    assert validated[f"date={DAYS[-1]}"].ref in manifest.upstream
    pending = score_select.pending_partitions(DATASET, result.version, model_name=result.model_name)
    assert f"date={DAYS[-1]}" in pending and f"date={NEW_DAY}" not in pending
    # Scored with yesterday's load: high load today follows high load yesterday.
    truth = onboarded[onboarded["date"].dt.strftime("%Y-%m-%d") == NEW_DAY]
    merged = rows.merge(truth, on=["hour", "model"])
    high = merged["load"] > 50
    assert merged.loc[high, "probability"].mean() > merged.loc[~high, "probability"].mean()
