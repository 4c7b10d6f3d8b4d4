"""Ingest plans by granularity and the outcome of one partition of `ingest_partitions` (its
XCom form); no servers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ml import contracts, ingest, score_select
from ml.errors import NotFoundError
from ml.sources.errors import InputRefused, SourceNotFound, TransientSourceError, UnreadableInput

pytestmark = pytest.mark.unit

TEST_CONTRACTS = Path(__file__).resolve().parents[1] / "data" / "contracts"


@pytest.fixture
def test_contracts(tmp_path, monkeypatch):
    for name in ("monthly_sales", "hourly_load"):
        shutil.copy(TEST_CONTRACTS / f"{name}.yaml", tmp_path / f"{name}.yaml")
    shutil.copy(contracts.CONTRACTS_DIR / "planes.yaml", tmp_path / "planes.yaml")
    monkeypatch.setattr(contracts, "CONTRACTS_DIR", tmp_path)


def test_plans_follow_the_granularity(test_contracts):
    assert ingest.plan_partitions("monthly_sales", "2023-01-31", "2023-03-01") == [
        "2023-01",
        "2023-02",
        "2023-03",
    ]
    hours = ingest.plan_partitions("hourly_load", "2023-07-01", "2023-07-02")
    assert len(hours) == 48 and hours[:2] == ["2023-07-01T00", "2023-07-01T01"]
    assert ingest.plan_partitions("planes", "2013-01-01", "2013-01-31") == ["2013-01-31"]
    with pytest.raises(ingest.DateRangeError, match="before date_from"):
        ingest.plan_partitions("hourly_load", "2023-07-02", "2023-07-01")


def test_scoring_names_the_partition_of_a_key(test_contracts):
    assert score_select.partition_of_key("monthly_sales", "2023-02") == "month=2023-02"
    assert score_select.partition_of_key("hourly_load", "2023-07-01T05") == "hour=2023-07-01T05"
    assert (
        score_select.partition_of_key("hourly_load", "hour=2023-07-01T05") == "hour=2023-07-01T05"
    )


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (SourceNotFound("no file"), True),
        (TransientSourceError("503"), True),
        (NotFoundError("no batch"), True),
        (UnreadableInput("bad bytes", rule="empty_file"), False),
        (InputRefused("too big", rule="too_large"), False),
        (ingest.DateRangeError("backwards"), False),
    ],
)
def test_a_failed_partition_says_what_and_whether_to_retry(exc, retryable):
    outcome = ingest.PartitionOutcome.failed("2023-07-01T05", exc)
    assert not outcome.ok and outcome.retryable is retryable
    assert outcome.error == str(exc)
    assert outcome.error_type == f"{type(exc).__module__}.{type(exc).__qualname__}"
    assert outcome.error_type.startswith("ml.")
    sent = json.loads(json.dumps(outcome.to_dict()))
    assert sent == {
        "key": "2023-07-01T05",
        "result": None,
        "error": str(exc),
        "error_type": outcome.error_type,
        "retryable": retryable,
    }


def test_a_done_partition_carries_its_batch():
    result = ingest.IngestResult(ref="s3://raw/x/month=2023-01/b1", rows=3, new=True)
    outcome = ingest.PartitionOutcome("2023-01", result=result)
    assert outcome.ok and outcome.to_dict()["result"] == {
        "ref": "s3://raw/x/month=2023-01/b1",
        "rows": 3,
        "new": True,
    }
    assert outcome.to_dict()["error"] is None and outcome.to_dict()["retryable"] is False
