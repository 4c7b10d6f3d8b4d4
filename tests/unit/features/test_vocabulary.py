"""The contract's derived-feature vocabulary gives, on every real 2013 flight, the very values
of the fixed table it replaced (`DERIVED` of feature code version 3, copied here as the
reference); and each op on hand-made rows."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from ml import contracts
from ml.features import joins
from ml.features.derived import Derived, derived_columns, derived_of, feature_columns
from ml.sources.nycflights13 import nycflights13_table

pytestmark = pytest.mark.unit


# --- the reference: ml/features/derived.py as it was (feature code version 3) ------------------


def _calendar(df):
    y, m, d = (df[c].to_numpy(dtype="float64", na_value=np.nan) for c in ("year", "month", "day"))
    ok = ~(np.isnan(y) | np.isnan(m) | np.isnan(d))
    months = np.where(ok, (y - 1970) * 12 + (m - 1), 0).astype("int64").astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(ok, d - 1, 0).astype("timedelta64[D]")
    return days, ok


def _day_of_year_angle(df):
    days, ok = _calendar(df)
    day_of_year = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype("int64") + 1
    return np.where(ok, 2 * np.pi * day_of_year / 365.25, np.nan)


def _minute_of_day_angle(df):
    hhmm = df["sched_dep_time"].to_numpy(dtype="float64")
    return 2 * np.pi * ((hhmm // 100) * 60 + hhmm % 100) / 1440.0


@lru_cache(maxsize=1)
def _digits():
    return np.array([str(i) for i in range(32)], dtype=object)


def _small_ints_as_text(values, ok, index):
    codes = np.where(ok, values, 0).astype("int64")
    return pd.Series(np.where(ok, _digits()[codes], None), index=index, dtype="string")


def _weekday(df):
    days, ok = _calendar(df)
    return _small_ints_as_text((days.astype("int64") + 3) % 7, ok, df.index)


def _month_of_year(df):
    month = df["month"].to_numpy(dtype="float64", na_value=np.nan)
    return _small_ints_as_text(month, ~np.isnan(month), df.index)


def _plane_age(df):
    built = pd.to_numeric(df["plane_year"], errors="coerce").astype("float64")
    return df["year"].astype("float64") - built


OLD_DERIVED = {
    "dep_hour": lambda df: (df["sched_dep_time"] // 100).astype("float64"),
    "dep_time_sin": lambda df: np.sin(_minute_of_day_angle(df)),
    "dep_time_cos": lambda df: np.cos(_minute_of_day_angle(df)),
    "weekday": _weekday,
    "month_of_year": _month_of_year,
    "day_of_year_sin": lambda df: np.sin(_day_of_year_angle(df)),
    "day_of_year_cos": lambda df: np.cos(_day_of_year_angle(df)),
    "route": lambda df: df["origin"].astype("string") + "-" + df["dest"].astype("string"),
    "plane_age": _plane_age,
}
OLD_KINDS = {
    "numeric": [
        "dep_hour",
        "dep_time_sin",
        "dep_time_cos",
        "day_of_year_sin",
        "day_of_year_cos",
        "plane_age",
    ],
    "categorical": ["weekday", "month_of_year", "route"],
}


@pytest.fixture(scope="module")
def year_of_flights():
    """Every real 2013 flight, joined to its plane (plane_year) as the pipeline joins it."""
    contract = contracts.load_contract("flights")
    tables = {t: nycflights13_table(t) for t in ("flights", "weather", "planes", "airports")}
    refs = {k: v for k, v in tables.items() if k != "flights"}
    return joins.join_references(tables["flights"], refs, contract)


def test_the_flights_contract_gives_the_old_values_on_every_real_flight(year_of_flights):
    contract = contracts.load_contract("flights")
    got = derived_columns(year_of_flights, derived_of(contract))
    assert set(got) == set(OLD_DERIVED)
    assert len(year_of_flights) == 336_776
    for name, old in OLD_DERIVED.items():
        want = pd.Series(old(year_of_flights), index=year_of_flights.index)
        have = pd.Series(got[name], index=year_of_flights.index)
        if name in OLD_KINDS["categorical"]:
            pd.testing.assert_series_equal(have, want, check_names=False)
        else:
            # Bit for bit: the same arithmetic in the same order.
            np.testing.assert_array_equal(have.to_numpy("float64"), want.to_numpy("float64"))
    # The model's columns, in the same order as the old table gave them.
    numeric, categorical = feature_columns(contract)
    assert numeric[-6:] == OLD_KINDS["numeric"]
    assert categorical[-3:] == OLD_KINDS["categorical"]
