"""The rules we compute ourselves: key uniqueness, freshness, and row rules row by row."""

from __future__ import annotations

import pytest

from ml.validation.checks import row_failures
from ml.validation.suite import validate_frame
from tests.unit.validation._data import check

pytestmark = pytest.mark.unit

KEY = "flights.table.unique.carrier+flight+origin+time_hour"


def test_unique_key_rule(flights, day):
    columns = ["carrier", "flight", "origin", "time_hour"]
    day.loc[[40, 41], columns] = day.loc[[7, 7], columns].to_numpy()
    report = check(day, flights)
    assert report.failed_rules == [KEY]
    assert report.rule(KEY)["unexpected_count"] == 3  # all three copies
    assert report.rule(KEY)["expectation"] == "expect_compound_columns_to_be_unique"
    assert len(report.rule(KEY)["unexpected_sample"]) == 3
    assert report.rule(KEY)["unexpected_sample"][0]["carrier"] == day.loc[7, "carrier"]


def test_freshness_rule(flights, day):
    assert check(day, flights).success
    late = validate_frame(day, flights, partition="date=2013-01-02")  # a day later: stale
    assert late.failed_rules == ["flights.table.freshness"]
    rule = late.rule("flights.table.freshness")
    assert rule["observed_value"] == day["time_hour"].max().isoformat()
    assert "end of date=2013-01-02 minus 6 h" in rule["error"]
    # the partition in a batch reference works too; no partition at all cannot pass
    ref = "s3://raw/flights/date=2013-01-02/b1"
    assert validate_frame(day, flights, batch_ref=ref).failed_rules == ["flights.table.freshness"]
    assert "no partition" in validate_frame(day, flights).rule("flights.table.freshness")["error"]


def test_row_failures_agree_with_gx(flights, day):
    day.loc[[1, 2], "dep_delay"] = 5000.0
    day.loc[[2, 3], "origin"] = "BOS"
    day.loc[4, "dest"] = "xx"
    day.loc[5, "carrier"] = None
    report = check(day, flights)
    failed = row_failures(day, flights)
    assert list(failed[failed.map(bool)].index) == [1, 2, 3, 4, 5]
    assert failed[2] == ["flights.dep_delay.max", "flights.origin.allowed"]
    for rule in report.failed_rules:
        assert report.rule(rule)["unexpected_count"] == sum(rule in r for r in failed)


def test_undeclared_columns_fail_under_reject_and_are_listed_under_drop(tmp_path):
    from ml.contracts import load_contract
    from tests.unit.validation._data import TOY_CONTRACT, toy_frame

    path = tmp_path / "toy.yaml"
    path.write_text(TOY_CONTRACT)
    frame = toy_frame().assign(ssn=["1", "2", "3"])
    report = validate_frame(frame, load_contract(path))
    rule = report.rule("toy.table.extra_columns")
    assert not report.success and report.failed_rules == ["toy.table.extra_columns"]
    assert rule["observed_value"] == ["ssn"] and "extra_columns: reject" in rule["error"]
    assert validate_frame(toy_frame(), load_contract(path)).success

    path.write_text(TOY_CONTRACT + "extra_columns: drop\n")
    report = validate_frame(frame, load_contract(path))
    assert report.success
    assert report.rule("toy.table.extra_columns")["dropped_columns"] == ["ssn"]
