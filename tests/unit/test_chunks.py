"""Chunks of partitions: one task each, every partition still its own batch and verdict."""

from __future__ import annotations

import pytest

from ml import chunks
from ml.errors import NotFoundError
from ml.sources.errors import TransientSourceError

pytestmark = pytest.mark.unit


def _ok(key):
    return {"key": key, "result": {"ref": f"s3://raw/x/date={key}/b", "rows": 1, "new": True}}


def _bad(key, kind="ml.sources.errors.UnreadableInput", retryable=False):
    return {
        "key": key,
        "result": None,
        "error": f"{key} broke",
        "error_type": kind,
        "retryable": retryable,
    }


def test_days_are_chunked_by_month_hours_by_day_months_by_year():
    days = ["2013-01-30", "2013-01-31", "2013-02-01"]
    assert chunks.chunked(days) == [["2013-01-30", "2013-01-31"], ["2013-02-01"]]
    hours = ["2013-01-01T22", "2013-01-01T23", "2013-01-02T00"]
    assert chunks.chunked(hours, "hour") == [hours[:2], hours[2:]]
    assert chunks.chunked(["2013-12", "2014-01"], "month") == [["2013-12"], ["2014-01"]]
    refs = [f"s3://raw/x/date={d}/batch" for d in days]
    assert chunks.chunked(refs, key=chunks.key_of) == [refs[:2], refs[2:]]
    assert chunks.chunked(days, max_size=1) == [[d] for d in days]
    year = [f"2013-01-{d:02d}" for d in range(1, 32)]
    assert [len(c) for c in chunks.chunked(year, max_size=10)] == [10, 10, 10, 1]


def test_a_range_run_is_named_by_its_range():
    assert chunks.range_key(["2013-01-03", "2013-01-01", "2013-01-02"]) == "2013-01-01..2013-01-03"
    assert chunks.range_key(["2013-01-01"]) == "2013-01-01"
    assert chunks.key_of("date=2013-01-05") == "2013-01-05"
    assert chunks.key_of("s3://raw/x/month=2013-01/b1") == "2013-01"


def test_a_chunk_with_some_partitions_in_goes_on_and_the_verdict_names_the_rest():
    outcomes = [_ok("2013-01-01"), _bad("2013-01-02")]
    chunks.raise_when_nothing_went("x", outcomes)  # returns: the good day is published
    message = chunks.verdict_message("x", ["2013-01-01", "2013-01-02", "2013-01-03"], outcomes)
    assert message.startswith("2 of 3 x partition(s) were not ingested")
    assert "2013-01-02: 2013-01-02 broke" in message
    assert "2013-01-03: its chunk failed" in message
    assert chunks.verdict_message("x", ["2013-01-01"], outcomes) == ""


def test_a_chunk_with_nothing_in_fails_with_the_retry_its_errors_deserve():
    with pytest.raises(chunks.ChunkFailed, match="2013-01-01 broke"):
        chunks.raise_when_nothing_went("x", [_bad("2013-01-01")])
    late = _bad("2013-01-02", "ml.sources.errors.SourceNotFound", retryable=True)
    with pytest.raises(NotFoundError):
        chunks.raise_when_nothing_went("x", [late])
    down = _bad("2013-01-03", "ml.sources.errors.TransientSourceError", retryable=True)
    with pytest.raises(TransientSourceError, match="2013-01-03"):
        chunks.raise_when_nothing_went("x", [_bad("2013-01-01"), late, down])


def test_only_a_partition_that_is_not_there_yet_is_waited_for():
    late = _bad("2013-01-02", "ml.sources.errors.SourceNotFound", retryable=True)
    assert chunks.still_waiting([late])
    assert not chunks.still_waiting([_bad("2013-01-02")])
    assert not chunks.still_waiting([late, _ok("2013-01-03")])
    assert not chunks.still_waiting([])
