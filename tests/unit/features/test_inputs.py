"""What features read: a join's missing partition handled as the contract says (impute,
skip_day, fail), in preprocessing and scoring; the earlier days lags read."""

from __future__ import annotations

import logging

import pytest

from ml import contracts, storage
from ml.errors import NotFoundError, RefusedError
from ml.features import joins
from ml.features.inputs import (
    MissingJoinPartitions,
    PartitionSkipped,
    empty_reference,
    feature_inputs,
)

pytestmark = pytest.mark.unit

DAYS = [f"date=2013-12-{d}" for d in range(27, 32)]


def _batch(dataset: str, partition: str) -> storage.Manifest:
    return storage.Manifest(
        zone="validated",
        bucket="validated",
        dataset=dataset,
        partition=partition,
        batch_id="b1",
        parts=[{"name": "part-0.parquet", "rows": 1}],
        rows=1,
        schema={},
    )


def _contract(tmp_path, missing: str | None = None, lags: str = ""):
    text = (contracts.CONTRACTS_DIR / "flights.yaml").read_text()
    if missing:
        text = text.replace(
            "      columns: [temp, humid, wind_speed, precip, visib, pressure]\n",
            f"      columns: [temp, humid, wind_speed, precip, visib, pressure]\n"
            f"      missing: {missing}\n",
        )
    if lags:
        text = text.replace("  numeric: [distance,", f"  lags:\n{lags}  numeric: [distance,")
    path = tmp_path / "flights.yaml"
    path.write_text(text)
    return contracts.load_contract(path)


def _listed(weather_days=DAYS[:-1]):
    """Flights for every day; weather lacks the last one (2013-12-31, as in the real data)."""
    return {
        "flights": {p: _batch("flights", p) for p in DAYS},
        "weather": {p: _batch("weather", p) for p in weather_days},
        "planes": {contracts.SNAPSHOT: _batch("planes", contracts.SNAPSHOT)},
        "airports": {contracts.SNAPSHOT: _batch("airports", contracts.SNAPSHOT)},
    }


def test_default_imputes_and_says_so(tmp_path, caplog):
    contract = _contract(tmp_path)
    listed = _listed()
    with caplog.at_level(logging.WARNING, logger="ml.features.inputs"):
        found = feature_inputs(contract, listed["flights"], listed)
    assert list(found.batches) == DAYS  # every day kept
    assert found.imputed == {"weather": ["date=2013-12-31"]} and found.skipped == {}
    assert [m.partition for m in found.references["weather"]] == DAYS[:-1]
    assert "2013-12-31" in caplog.text and "missing: impute" in caplog.text
    # Scoring the day alone: nothing of weather to join, its rows keep missing weather.
    alone = {"date=2013-12-31": listed["flights"]["date=2013-12-31"]}
    scoring = feature_inputs(contract, alone, listed, scoring=True)
    assert scoring.references["weather"] == [] and scoring.imputed
    assert list(empty_reference(contract, "weather").columns) == [
        "origin",
        "time_hour",
        "temp",
        "humid",
        "wind_speed",
        "precip",
        "visib",
        "pressure",
    ]
    # A table with no batch for any day of a window is not a gap: refused, not imputed.
    with pytest.raises(MissingJoinPartitions, match="nothing to impute"):
        feature_inputs(contract, listed["flights"], _listed(weather_days=[]))


def test_skip_day_leaves_the_day_out(tmp_path):
    contract = _contract(tmp_path, "skip_day")
    listed = _listed()
    found = feature_inputs(contract, listed["flights"], listed)
    assert list(found.batches) == DAYS[:-1]
    assert found.skipped == {"weather": ["date=2013-12-31"]}
    assert "date=2013-12-31" not in {p for p in (storage.parse_ref(r)[2] for r in found.upstream)}
    alone = {"date=2013-12-31": listed["flights"]["date=2013-12-31"]}
    with pytest.raises(PartitionSkipped) as err:
        feature_inputs(contract, alone, listed, scoring=True)
    assert isinstance(err.value, NotFoundError)  # pending: scored once weather arrives


def test_fail_is_a_refusal_naming_the_dataset_and_days(tmp_path):
    contract = _contract(tmp_path, "fail")
    listed = _listed()
    with pytest.raises(MissingJoinPartitions) as err:
        feature_inputs(contract, listed["flights"], listed)
    assert isinstance(err.value, RefusedError)  # not retried
    assert "weather" in str(err.value) and "date=2013-12-31" in str(err.value)


def test_lags_read_only_earlier_days(tmp_path):
    lags = "    dep_delay_1d: {column: dep_delay, partitions: 1, keys: [origin], agg: mean}\n"
    contract = _contract(tmp_path, lags=lags)
    listed = _listed()
    window = {p: listed["flights"][p] for p in DAYS[2:]}
    found = feature_inputs(contract, window, listed)
    assert [m.partition for m in found.lag_batches] == DAYS[1:-1]
    assert all(m.partition < min(window) or m.partition in window for m in found.lag_batches)
    assert {m.ref for m in found.lag_batches} <= set(found.upstream)


def test_an_imputed_join_leaves_its_columns_missing(tables, contract):
    """Scoring a day whose weather is missing (impute): the empty reference joins nothing."""
    refs = {
        "weather": empty_reference(contract, "weather"),
        "planes": tables["planes"],
        "airports": tables["airports"],
    }
    rows = tables["flights"].reset_index(drop=True)
    got = joins.join_references(rows, refs, contract)
    assert len(got) == len(rows) and got["temp"].isna().all() and got["plane_seats"].notna().any()
