"""Lag features: the value N days before, matched on keys, aggregated; never a later day."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.features import joins
from ml.features.lags import PARTITION_TAG, Lag, lag_table, shift_partition, source_partitions

pytestmark = pytest.mark.unit

DAYS = [f"date=2024-03-{d:02d}" for d in range(1, 11)]


class _Contract:
    """The parts of a contract the join reads: a dataset with lags and no references."""

    dataset = "sales"
    path = "sales.yaml"

    def __init__(self, lags: dict):
        self.features = {"lags": lags}


def _rows(days=DAYS, stores=("a", "b")) -> pd.DataFrame:
    """One row per store and day; `value` encodes its own day (day-of-month * 10 + store)."""
    rows = []
    for p in days:
        d = int(p[-2:])
        for i, store in enumerate(stores):
            rows.append({"store": store, "value": d * 10.0 + i, PARTITION_TAG: p})
    return pd.DataFrame(rows).astype({"store": "string"})


def test_shift_and_sources():
    assert shift_partition("date=2024-03-01", -1) == "date=2024-02-29"  # leap year
    lags = [Lag("v1", "value", 1), Lag("v7", "value", 7)]
    assert source_partitions(lags, ["date=2024-03-08"]) == ["date=2024-03-01", "date=2024-03-07"]


def test_a_lag_reads_its_day_minus_n_on_the_same_keys():
    rows = _rows()
    contract = _Contract(
        {
            "value_1d": {"column": "value", "partitions": 1, "keys": ["store"]},
            "value_3d": {"column": "value", "partitions": 3, "keys": ["store"]},
            "day_mean_1d": {"column": "value", "partitions": 1, "agg": "mean"},
        }
    )
    got = joins.join_references(rows, {joins.LAGS: rows}, contract)
    assert PARTITION_TAG not in got.columns and len(got) == len(rows)
    day = rows[PARTITION_TAG].str[-2:].astype(int).to_numpy()
    store = (rows["store"] == "b").astype(int).to_numpy()
    want_1 = np.where(day > 1, (day - 1) * 10.0 + store, np.nan)
    want_3 = np.where(day > 3, (day - 3) * 10.0 + store, np.nan)
    np.testing.assert_array_equal(got["value_1d"].to_numpy(), want_1)
    np.testing.assert_array_equal(got["value_3d"].to_numpy(), want_3)
    np.testing.assert_array_equal(
        got["day_mean_1d"].to_numpy(), np.where(day > 1, (day - 1) * 10.0 + 0.5, np.nan)
    )


def test_no_lag_ever_reads_the_rows_own_day_or_a_later_one():
    """Every lag value decodes to the day it was read from: always strictly before the row's
    day, whatever the order of the rows and whichever days are there."""
    rng = np.random.default_rng(0)
    days = sorted(rng.choice(DAYS, size=7, replace=False))
    rows = _rows(days).sample(frac=1.0, random_state=1).reset_index(drop=True)
    lags = {f"v{n}": {"column": "value", "partitions": n, "keys": ["store"]} for n in (1, 2, 5)}
    got = joins.join_references(rows, {joins.LAGS: rows}, _Contract(lags))
    own_day = rows[PARTITION_TAG].str[-2:].astype(int)
    for name, spec in lags.items():
        read_day = got[name] // 10
        found = read_day.notna()
        assert (read_day[found] == own_day[found] - spec["partitions"]).all()
        assert (read_day[found] < own_day[found]).all()
    # A lag of 0 days (the row's own day) is refused, here and by the contract checks.
    with pytest.raises(ValueError, match=">= 1"):
        lag_table(Lag("v0", "value", 0), rows)


def test_lags_on_dask_partitions_equal_pandas():
    import dask
    import dask.dataframe as dd

    rows = _rows()
    contract = _Contract({"v1": {"column": "value", "partitions": 1, "keys": ["store"]}})
    want = joins.join_references(rows, {joins.LAGS: rows}, contract)
    with dask.config.set(scheduler="synchronous"):
        left = dd.from_pandas(rows, npartitions=3)
        got = joins.join_references(left, {joins.LAGS: rows}, contract).compute()
    pd.testing.assert_series_equal(got["v1"], want["v1"])


def test_lags_need_the_rows_partition():
    rows = _rows()
    contract = _Contract({"v1": {"column": "value", "partitions": 1}})
    with pytest.raises(KeyError, match=PARTITION_TAG):
        joins.join_references(rows.drop(columns=[PARTITION_TAG]), {joins.LAGS: rows}, contract)
