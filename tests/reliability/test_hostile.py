"""The hostile corpus (`corpus.CASES`) through the real ingest -> validate path, against the real
S3 API server: each case ends as its expected outcome, and none crashes without quarantine,
is accepted silently, loses a row or commits a duplicate. Each case's result goes to the
reliability table (`record_outcome`)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from ml import contracts, ingest, storage
from ml.sources.errors import InputRefused, SourceNotFound, TransientSourceError, UnreadableInput
from ml.validation.batch import validate_batch
from ml.validation.outcome import ContractViolation
from tests.conftest import pipeline_environment
from tests.reliability.corpus import BASE, CASES, CONTRACT, DAY, Case
from tests.reliability.server import Handler, serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@dataclass(frozen=True)
class Corpus:
    contracts: Path
    drop: Path
    url: str


@pytest.fixture(scope="module")
def corpus(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "contracts").mkdir()
    (root / "drop").mkdir()
    patch = pytest.MonkeyPatch()
    patch.setattr(contracts, "CONTRACTS_DIR", root / "contracts")
    env = {
        "MLPIPE_DROP_DIR": str(root / "drop"),
        # The suite's server is on loopback: allowed by name, explicitly (nothing else is).
        "MLPIPE_HTTP_ALLOWED_PRIVATE_HOSTS": '["127.0.0.1"]',
        "MLPIPE_HTTP_REDIRECT_HOSTS": '["127.0.0.2"]',
    }
    try:
        with serve() as url, pipeline_environment(env):
            yield Corpus(root / "contracts", root / "drop", url)
    finally:
        patch.undo()


def _deliver(corpus: Corpus, case: Case, data: bytes) -> None:
    """The case's contract file, and its input where the source looks."""
    source: dict[str, Any]
    if case.kind == "http":
        Handler.files[case.name] = data
        path = case.path or f"/file/{case.name}.csv"
        source = {"kind": "http", "url": corpus.url + path, "format": "csv", "retries": 1}
        source |= {"backoff": 0.01, "timeout": 5}
    else:
        folder = corpus.drop / case.name
        folder.mkdir(exist_ok=True)
        (folder / f"{DAY}.{case.ext}").write_bytes(data)
        source = {"kind": "drop_folder", "path": case.name, "pattern": "{date}." + case.ext}
        source["format"] = case.kind
    doc = {"dataset": case.name, **CONTRACT, "source": {**source, **case.source}, **case.contract}
    (corpus.contracts / f"{case.name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))


def _canon(df: pd.DataFrame) -> list[dict[str, Any]]:
    def one(v):
        if v is None or (not isinstance(v, list | dict) and pd.isna(v)):
            return None
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        return v.item() if hasattr(v, "item") else v

    return [{k: one(v) for k, v in r.items()} for r in df.to_dict("records")]


@dataclass
class Seen:
    """What a case did: outcome, rule, where its rows went, and the evidence."""

    outcome: str = ""
    rule: str = ""
    validated: int = 0
    quarantined: int = 0
    left: int = 0
    duplicates: int = 0
    crashed: bool = False
    error: BaseException | None = None
    raw: storage.Manifest | None = None
    validation: Any = None


def _ingest_and_validate(case: Case, data: bytes) -> Seen:
    seen = Seen()
    try:
        got = ingest.ingest_partition(case.name, DAY)
    except UnreadableInput as exc:
        seen.outcome, seen.rule, seen.error = "quarantined", exc.rule, exc
        seen.quarantined = case.rows_in if _bytes_kept(exc.quarantine_ref, data) else 0
        try:  # the same bytes again: the same quarantine batch, no second copy
            ingest.ingest_partition(case.name, DAY)
        except UnreadableInput as again:
            seen.duplicates += again.quarantine_ref != exc.quarantine_ref
        return seen
    except InputRefused as exc:
        seen.outcome, seen.rule, seen.left, seen.error = "refused", exc.rule, case.rows_in, exc
        return seen
    except (SourceNotFound, TransientSourceError) as exc:
        kind = "not_found" if isinstance(exc, SourceNotFound) else "transient"
        seen.outcome, seen.rule, seen.left, seen.error = kind, type(exc).__name__, case.rows_in, exc
        return seen
    except Exception as exc:  # anything else is a crash: nothing held, nothing named
        seen.outcome, seen.rule, seen.crashed, seen.error = "crash", type(exc).__name__, True, exc
        return seen
    seen.raw = storage.read_manifest(got.ref)
    again = ingest.ingest_partition(case.name, DAY)
    seen.duplicates += again.new or again.ref != got.ref
    seen.duplicates += len(storage.list_batches("raw", case.name)) - 1
    try:
        result = validate_batch(got.ref)
    except ContractViolation as exc:
        result = exc.outcome
    except Exception as exc:
        seen.outcome, seen.rule, seen.crashed, seen.error = "crash", type(exc).__name__, True, exc
        return seen
    seen.validation = result
    seen.outcome = "accepted" if result.status == "passed" else "quarantined"
    seen.rule = ",".join(r.removeprefix(f"{case.name}.") for r in result.failed_rules)
    seen.validated, seen.quarantined = result.rows_validated, result.rows_quarantined
    return seen


def _bytes_kept(ref: str, data: bytes) -> bool:
    manifest = storage.read_manifest(ref)
    stored = storage.filesystem().cat_file(f"{manifest.prefix}/{manifest.extra['file']}")
    return stored == data and manifest.extra["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(corpus, case, record_outcome):
    data = case.input_bytes()
    _deliver(corpus, case, data)
    started = time.monotonic()
    if case.env:  # (setting the environment drops the cached S3 clients: only when needed)
        with pipeline_environment(case.env):
            seen = _ingest_and_validate(case, data)
    else:
        seen = _ingest_and_validate(case, data)
    elapsed = time.monotonic() - started
    if seen.outcome == "accepted" and _canon(_validated_rows(seen)) != (case.rows or BASE):
        seen.outcome = "accepted_changed"  # validated, but not the rows that were delivered
    silently = seen.validated > 0 and case.expected != "accepted"
    result = record_outcome(
        suite="hostile",
        case=case.name,
        kind=case.kind,
        expected=case.expected,
        outcome=seen.outcome,
        rule=seen.rule,
        expected_rule=case.rule,
        rows_in=case.rows_in,
        rows_validated=seen.validated,
        rows_quarantined=seen.quarantined,
        rows_left_at_source=seen.left,
        duplicates=seen.duplicates,
        crashed=seen.crashed,
        silently_accepted=silently,
        note=case.note,
    )
    if seen.crashed:
        raise AssertionError(f"{case.name}: crashed without quarantine") from seen.error
    assert (seen.outcome, _rule_matches(case, seen)) == (case.expected, True), (
        f"{case.name}: expected {case.expected} ({case.rule}), got {seen.outcome} ({seen.rule}): "
        f"{seen.error}"
    )
    assert not result.silently_accepted
    assert result.rows_lost == 0, f"{case.name}: {result.rows_lost} rows lost"
    assert result.duplicates == 0
    if case.max_seconds is not None:
        assert elapsed < case.max_seconds, f"{case.name} took {elapsed:.1f} s"
    if seen.raw is not None:
        _check_raw(seen.raw, data)
    if case.expected == "accepted":
        assert seen.validated == case.rows_in == seen.raw.rows
    CHECKS.get(case.name, lambda *a: None)(case, seen, corpus)


def _validated_rows(seen: Seen) -> pd.DataFrame:
    return storage.read_batch(seen.validation.manifest)


def _rule_matches(case: Case, seen: Seen) -> bool:
    if case.expected == "accepted":
        return seen.rule == ""
    return case.rule in seen.rule.split(",")


def _check_raw(raw: storage.Manifest, data: bytes) -> None:
    """Raw is raw: the delivered bytes are kept, content-addressed, and the manifest names them."""
    kept = raw.extra["source_bytes"]
    assert kept["sha256"] == hashlib.sha256(data).hexdigest() and kept["bytes"] == len(data)
    assert kept["url"].endswith(f"/_sources/sha256/{kept['sha256']}")
    assert storage.filesystem().cat_file(kept["url"].removeprefix("s3://")) == data


# --- what some cases must show besides --------------------------------------------------------


def _dropped_column(case: Case, seen: Seen, corpus: Corpus) -> None:
    assert "ssn" in seen.raw.schema  # raw keeps what came
    validated = seen.validation.manifest
    assert "ssn" not in validated.schema and validated.extra["dropped_columns"] == ["ssn"]
    assert "ssn" not in storage.read_batch(validated).columns
    rule = seen.validation.report.rule(f"{case.name}.table.extra_columns")
    assert rule["success"] and rule["dropped_columns"] == ["ssn"]


def _undeclared_ssn(case: Case, seen: Seen, corpus: Corpus) -> None:
    rule = seen.validation.report.rule(f"{case.name}.table.extra_columns")
    assert rule["observed_value"] == ["ssn"] and "ssn" in rule["error"]
    assert storage.committed_in_zone([seen.raw.ref], "validated") == []


def _final_url(case: Case, seen: Seen, corpus: Corpus) -> None:
    assert seen.raw.source == f"{corpus.url}/file/{case.name}.csv"
    assert seen.raw.extra["requested_url"] == corpus.url + case.path


def _no_request(case: Case, seen: Seen, corpus: Corpus) -> None:
    assert Handler.hits[f"/file/{case.name}.csv"] == 0  # refused before connecting


def _from_metadata(case: Case, seen: Seen, corpus: Corpus) -> None:
    assert "metadata declares 20000000 rows" in seen.error.detail


CHECKS = {
    "csv_undeclared_column_dropped": _dropped_column,
    "csv_undeclared_ssn_column": _undeclared_ssn,
    "http_redirect_same_host": _final_url,
    "http_loopback_not_allowed": _no_request,
    "parquet_20m_row_bomb": _from_metadata,
}


def test_same_bytes_are_kept_once(corpus):
    """Two datasets delivered the same bytes: one object under its sha256, both manifests
    naming it."""
    from tests.reliability.corpus import csv_bytes

    data = csv_bytes().replace(b"Ada", b"Ida")
    refs = []
    for name in ("dedup_a", "dedup_b"):
        case = Case(name, "csv", "accepted", data=data)
        _deliver(corpus, case, data)
        refs.append(ingest.ingest_partition(name, DAY).ref)
    urls = {storage.read_manifest(r).extra["source_bytes"]["url"] for r in refs}
    assert len(urls) == 1
    key = urls.pop().removeprefix("s3://")
    fs = storage.filesystem()
    fs.invalidate_cache(key.rsplit("/", 1)[0])
    versions = storage.minio_client().list_objects(
        key.split("/", 1)[0], prefix=key.split("/", 1)[1], include_version=True
    )
    assert len(list(versions)) == 1  # written once, never overwritten
