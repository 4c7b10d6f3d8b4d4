"""Partition keys and names by granularity (`ml.partitions`), and the modules that read them:
freshness ends, the preprocessing window, lags (days only)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from ml import partitions as p
from ml.features.build import _in_window
from ml.features.lags import shift_partition
from ml.validation.checks import partition_end

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("granularity", "key", "name", "start", "end"),
    [
        ("hour", "2013-01-05T13", "hour=2013-01-05T13", "2013-01-05T13:00", "2013-01-05T14:00"),
        ("hour", "2013-12-31T23", "hour=2013-12-31T23", "2013-12-31T23:00", "2014-01-01T00:00"),
        ("day", "2013-01-05", "date=2013-01-05", "2013-01-05T00:00", "2013-01-06T00:00"),
        ("month", "2013-01", "month=2013-01", "2013-01-01T00:00", "2013-02-01T00:00"),
        ("month", "2013-12", "month=2013-12", "2013-12-01T00:00", "2014-01-01T00:00"),
    ],
)
def test_keys_names_and_ranges(granularity, key, name, start, end):
    assert p.name(key, granularity) == name
    assert p.split_name(name) == (granularity, key)
    assert p.key_of_name(name) == key
    assert p.start(key, granularity) == datetime.fromisoformat(start)
    assert p.end(key, granularity) == datetime.fromisoformat(end)
    assert p.name_range(name) == (datetime.fromisoformat(start), datetime.fromisoformat(end))
    assert p.key_of(datetime.fromisoformat(start), granularity) == key
    assert p.name(name, granularity) == name  # a name is taken as it is


def test_key_of_a_timestamp_is_taken_in_utc():
    local = datetime(2013, 1, 5, 23, 30, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert p.key_of(local, "hour") == "2013-01-05T23"
    assert p.key_of(local, "day") == "2013-01-05"
    assert p.key_of(date(2013, 1, 31), "month") == "2013-01"
    assert p.normalize_key(date(2013, 1, 5), "day") == "2013-01-05"
    assert p.name("snapshot", "snapshot") == "snapshot"
    assert p.split_name("snapshot") == ("snapshot", "snapshot")


def test_keys_in_a_range_by_granularity():
    assert p.keys_between("2013-01-30", "2013-02-02", "day") == [
        "2013-01-30",
        "2013-01-31",
        "2013-02-01",
        "2013-02-02",
    ]
    hours = p.keys_between("2013-01-30", "2013-01-31", "hour")
    assert len(hours) == 48 and hours[0] == "2013-01-30T00" and hours[-1] == "2013-01-31T23"
    assert p.keys_between("2013-01-15", "2013-03-01", "month") == ["2013-01", "2013-02", "2013-03"]
    assert p.keys_between("2013-01-15", None, "month") == ["2013-01"]
    assert p.keys_between("2013-01-01", "2013-12-31", "snapshot") == ["snapshot"]
    with pytest.raises(p.PartitionKeyError, match="before date_from"):
        p.keys_between("2013-01-02", "2013-01-01", "day")
    with pytest.raises(p.PartitionKeyError, match="at most 2"):
        p.keys_between("2013-01-01", "2013-01-03", "hour", max_days=2)


@pytest.mark.parametrize(
    ("key", "granularity"),
    [
        ("2013-01-05", "hour"),
        ("2013-01-05T13", "day"),
        ("2013-01-05", "month"),
        ("2013-13", "month"),
        ("2013-02-30", "day"),
        ("date=2013-01-05", "month"),
        ("yesterday", "day"),
    ],
)
def test_keys_of_another_granularity_are_refused(key, granularity):
    with pytest.raises(p.PartitionKeyError, match=granularity):
        p.name(key, granularity)


def test_names_that_are_not_partitions_are_refused():
    for bad in ("2013-01-05", "week=2013-01", "date=2013-01"):
        with pytest.raises(p.PartitionKeyError):
            p.split_name(bad)
    with pytest.raises(p.PartitionKeyError, match="not one of"):
        p.granularity_of({"granularity": "week"})
    assert p.granularity_of({}) == "day"


def test_overlap_with_a_window_of_days():
    assert p.overlaps("month=2013-01", "2013-01-31", "2013-02-10")
    assert not p.overlaps("month=2013-01", "2013-02-01", None)
    assert p.overlaps("hour=2013-01-05T23", None, "2013-01-05")
    assert not p.overlaps("hour=2013-01-06T00", None, "2013-01-05")
    assert _in_window("date=2013-01-05", "2013-01-05", "2013-01-05")
    assert not _in_window("date=2013-01-06", "2013-01-05", "2013-01-05")
    assert _in_window("month=2013-02", "2013-01-01", "2013-03-31")


def test_freshness_ends_by_the_partition_name():
    assert partition_end("date=2013-01-01") == pd.Timestamp("2013-01-02")
    assert partition_end("hour=2013-01-01T05") == pd.Timestamp("2013-01-01T06:00")
    assert partition_end("month=2013-12") == pd.Timestamp("2014-01-01")
    assert partition_end("2013-01", "month") == pd.Timestamp("2013-02-01")  # a bare key
    assert partition_end("snapshot") is None and partition_end(None) is None
    assert partition_end("date=someday") is None


def test_lags_shift_day_partitions_only():
    assert shift_partition("date=2013-03-01", -1) == "date=2013-02-28"
    assert shift_partition("date=2013-01-01", 7) == "date=2013-01-08"
    with pytest.raises(p.PartitionKeyError, match="day partitions"):
        shift_partition("month=2013-01", -1)
