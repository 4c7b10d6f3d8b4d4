"""Preprocessing on real servers (S3 API server, Dask cluster): snapshot lookups ingested and
validated like any batch, the feature set's layout, no leakage, cache hit and cache miss."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from ml import contracts, ingest, storage
from ml.features import build, joins, sets
from ml.features.derived import TARGET
from ml.validation.batch import validate_batch

pytestmark = pytest.mark.integration

# A window of its own (the params are part of the feature version): other modules' feature
# sets over the same batches are never reused by mistake.
DATE_FROM, DATE_TO = "2013-01-01", "2013-01-05"
DAYS = ingest.days_between(DATE_FROM, DATE_TO)


@pytest.fixture(scope="module")
def validated(s3_server):
    for dataset in ("flights", "weather"):
        for day in DAYS:
            raw = ingest.ingest_partition(dataset, day)
            validate_batch(raw.ref, dataset)
    snapshots = {}
    for dataset in ("planes", "airports"):
        assert ingest.plan_partitions(dataset, DATE_FROM, DATE_TO) == [DATE_TO]
        raw = ingest.ingest_partition(dataset, DATE_TO)
        snapshots[dataset] = validate_batch(raw.ref, dataset).manifest
    return snapshots


def test_snapshot_reference_tables_are_ingested_whole(validated):
    planes = validated["planes"]
    assert planes.partition == contracts.SNAPSHOT and planes.rows == 3322
    assert validated["airports"].rows == 1458
    again = ingest.ingest_partition("planes", "2013-02-01")  # same content: nothing new
    assert again.new is False and again.ref.endswith(f"/{planes.batch_id}")
    assert joins.snapshot_manifest("planes").ref == planes.ref


def test_feature_set_layout_no_leakage_and_reuse(validated, dask_cluster, caplog):
    built = build.build_features("flights", DATE_FROM, DATE_TO)
    assert built.reused is False
    assert (
        validated["planes"].ref in built.manifest["inputs"]
        and validated["airports"].ref in built.manifest["inputs"]
    )
    fs = storage.filesystem()
    base = built.ref.removeprefix("s3://")
    manifest = sets.read_feature_manifest(built.ref)
    assert manifest["feature_version"] == built.feature_version
    # The attempt that committed wrote under its own folder; the manifest names it.
    data = manifest["data"]
    assert data.startswith(f"{built.ref}/a-") and manifest["transform"] == f"{data}/transform.json"
    assert fs.exists(manifest["transform"][5:]) and fs.exists(f"{base}/{storage.MANIFEST}")

    frames = {}
    for split in sets.SPLITS:
        parts = sets.split_parts(manifest, split)
        assert parts and all(p["path"].startswith(f"{data}/{split}/") for p in parts)
        assert sum(p["rows"] for p in parts) == manifest["rows"][split]
        frames[split] = sets.read_split(manifest, split)
        assert len(frames[split]) == manifest["rows"][split]
    # No leakage: every test day after every validation day after every train day.
    day = {k: pd.to_datetime(f[["year", "month", "day"]]) for k, f in frames.items()}
    assert all(d.is_monotonic_increasing for d in day.values())  # parts listed in time order
    assert day["train"].max() < day["validation"].min()
    assert day["validation"].max() < day["test"].min()
    # Cancelled flights (no dep_delay) are in no split: rows = validated rows - cancelled.
    raw = pd.concat(storage.read_batch(m) for m in _validated_flights().values())
    assert sum(manifest["rows"].values()) == raw["dep_delay"].notna().sum()
    for f in frames.values():
        assert f[TARGET].isin([0.0, 1.0]).all()
    # The transform was fitted on the train split only: its statistics are the train rows'.
    transform = sets.load_transform(manifest)
    departed = raw[raw["dep_delay"].notna()]
    in_train = departed[
        pd.to_datetime(departed[["year", "month", "day"]])
        .dt.strftime("date=%Y-%m-%d")
        .isin(manifest["splits"]["train"])
    ]
    assert transform.means["distance"] == pytest.approx(in_train["distance"].mean(), rel=1e-9)
    assert transform.means["distance"] != pytest.approx(departed["distance"].mean(), rel=1e-9)
    assert len(sets.read_split(manifest, sets.EVAL_SNAPSHOT)) == manifest["rows"]["test"]
    # Same rows through the restored transform (the pyfunc path) = the written features.
    eval_rows = sets.read_split(manifest, sets.EVAL_SNAPSHOT)
    applied = transform.apply(eval_rows[transform.input_columns])
    written = frames["test"][applied.columns]
    order = ["carrier", "flight", "origin", "time_hour"]
    pd.testing.assert_frame_equal(
        applied.assign(**eval_rows[order])
        .sort_values(order)
        .drop(columns=order)
        .reset_index(drop=True),
        written.assign(**frames["test"][order])
        .sort_values(order)
        .drop(columns=order)
        .reset_index(drop=True),
    )

    # Cache hit: same inputs, contract, code, params -> reused, and the log says so.
    with caplog.at_level(logging.INFO, logger="ml.features"):
        again = build.build_features("flights", DATE_FROM, DATE_TO)
    assert again.reused is True and again.feature_version == built.feature_version
    assert "reusing it, nothing recomputed" in caplog.text

    # Cache miss: a param changes, or one input batch is superseded by a new one.
    other = build.build_features("flights", DATE_FROM, DATE_TO, min_frequency=1)
    assert other.reused is False and other.feature_version != built.feature_version
    weather = storage.latest_batches("validated", "weather")[f"date={DAYS[0]}"]
    storage.write_batch(
        storage.read_batch(weather), "validated", "weather", weather.partition, source="test"
    )
    changed = build.build_features("flights", DATE_FROM, DATE_TO)
    assert changed.reused is False
    assert changed.feature_version not in (built.feature_version, other.feature_version)
    assert changed.rows == built.rows


def _validated_flights() -> dict:
    return {
        p: m
        for p, m in storage.latest_batches("validated", "flights").items()
        if p in {f"date={d}" for d in DAYS}
    }


@pytest.fixture
def year_end(s3_server):
    """The last days of 2013, taken away again afterwards: the package's other modules (scoring
    plans the newest validated days) expect the session's newest days to be their own."""
    days = ingest.days_between("2013-12-28", "2013-12-31")
    yield days
    fs = storage.filesystem()
    for zone in ("raw", "validated", "quarantine"):
        for dataset in ("flights", "weather"):
            for day in days:
                path = f"{zone}/{dataset}/date={day}"
                if fs.exists(path):
                    fs.rm(path, recursive=True)


def test_a_missing_weather_day_is_imputed_by_default_and_said(
    validated, dask_cluster, caplog, year_end
):
    """The real gap of 2013: weather has no rows for 2013-12-31. The flights contract leaves
    `joins[].missing` at its default (impute): the year's end goes through, its flights keep
    missing weather (imputed by the transform), and the log and the manifest say so."""
    days = year_end
    for day in days:
        validate_batch(ingest.ingest_partition("flights", day).ref, "flights")
        if day != "2013-12-31":
            validate_batch(ingest.ingest_partition("weather", day).ref, "weather")
    assert "date=2013-12-31" not in storage.latest_batches("validated", "weather")
    with caplog.at_level(logging.WARNING, logger="ml.features"):
        built = build.build_features("flights", days[0], days[-1])
    assert built.manifest["missing"] == {
        "imputed": {"weather": ["date=2013-12-31"]},
        "skipped": {},
    }
    assert "no validated weather batch for ['date=2013-12-31']" in caplog.text
    assert built.manifest["splits"]["test"] == ["date=2013-12-31"]
    last = sets.read_split(built.manifest, sets.EVAL_SNAPSHOT)
    assert len(last) == built.rows["test"] > 0 and last["temp"].isna().all()
    test = sets.read_split(built.manifest, "test")
    assert (test["num__temp"] == np.float32(0.0)).all()  # the train mean, scaled: 0
