"""Ingestion: the rows of one partition from a dataset's source into the `raw` zone as a batch;
input that cannot be read is kept byte for byte in `quarantine` instead."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pyarrow import ArrowException

from ml import commit, contracts, storage
from ml.errors import BadInputError
from ml.settings import Settings, get_settings
from ml.sources.errors import InputRefused, SourceError, UnreadableInput
from ml.sources.limits import Limits
from ml.sources.read import SourceRows, read_input

log = logging.getLogger(__name__)

REASON = "_reason.json"
# File names the quarantine writes itself: an input file with one of these names is renamed.
_RESERVED_NAMES = {storage.MANIFEST, REASON, "_report.json"}


class DateRangeError(BadInputError):
    """A date range that cannot be ingested (backwards, or too long for one run)."""


@dataclass(frozen=True)
class IngestResult:
    """One ingested partition: its committed raw batch, its rows, and whether it is new (False:
    the newest batch of the partition already held the same content, nothing was written)."""

    ref: str
    rows: int
    new: bool

    def to_dict(self) -> dict[str, Any]:
        """The XCom form: `{"ref", "rows", "new"}`."""
        return asdict(self)


def partition_name(day: date) -> str:
    return f"date={day.isoformat()}"


def days_between(date_from: str, date_to: str | None = None, max_days: int = 366) -> list[str]:
    """Every day from `date_from` to `date_to` inclusive, as ISO dates."""
    first = date.fromisoformat(date_from)
    last = date.fromisoformat(date_to) if date_to else first
    if last < first:
        raise DateRangeError(f"date range: date_to {last} is before date_from {first}")
    span = (last - first).days + 1
    if span > max_days:
        raise DateRangeError(
            f"date range {first}..{last} spans {span} days; at most {max_days} per run"
        )
    return [(first + timedelta(days=i)).isoformat() for i in range(span)]


def plan_partitions(dataset: str, date_from: str, date_to: str | None = None) -> list[str]:
    """The days an ingest run reads: every day of the range, or for a snapshot reference table
    (`partition: {granularity: snapshot}`) one day, the last, whose whole table is taken."""
    days = days_between(date_from, date_to)
    return days[-1:] if contracts.load_contract(dataset).is_snapshot else days


def ingest_partition(dataset: str, day: date | str) -> IngestResult:
    """Ingest `day` of `dataset` into `raw`; return the batch reference and row count.

    Idempotent: when the newest committed batch of the partition already holds the same
    content, it is returned and nothing is written. Changed content becomes a new batch whose
    manifest names the one it supersedes (`extra.supersedes`); the old batch is kept.

    Raw is raw: the bytes the rows were parsed from are kept as delivered, once per content, at
    `s3://raw/_sources/sha256/<hex>` (`storage.put_content_addressed`); the manifest names them
    (`extra.source_bytes`: url, sha256, bytes, name; the final URL after redirects is
    `source`, the one asked for `extra.requested_url`). Every column is kept as delivered;
    validation applies the contract's `extra_columns` policy.

    Input that cannot be read (or stored) is kept byte for byte in `quarantine` (see
    `quarantine_unreadable`) and `UnreadableInput` is raised naming the source, the rule
    broken and the quarantine path; nothing reaches `raw`. Input refused before it was taken
    (over the bounds, or from a forbidden address) raises `InputRefused`; a day with nothing
    delivered raises `SourceNotFound`; neither quarantines anything (`ml.sources.errors`).

    A snapshot reference table (planes, airports) is read whole into the partition `snapshot`;
    `day` only fills in a file source's date pattern.
    """
    day = date.fromisoformat(day) if isinstance(day, str) else day
    contract = contracts.load_contract(dataset)
    partition = contracts.SNAPSHOT if contract.is_snapshot else partition_name(day)
    got, digest = _read(contract, partition, day)
    existing = storage.list_batches("raw", dataset, partition)
    if existing and existing[-1].content_hash == digest:
        log.info(
            "%s %s unchanged since batch %s: nothing to ingest",
            dataset,
            partition,
            existing[-1].ref,
        )
        return IngestResult(ref=existing[-1].ref, rows=existing[-1].rows, new=False)
    extra = _source_extra(got)
    if existing:
        extra["supersedes"] = existing[-1].ref
    supersedes = existing[-1].ref if existing else ""
    try:
        manifest = storage.write_batch(
            got.df,
            "raw",
            dataset,
            partition,
            # The same content on top of the same predecessor: two attempts commit one batch.
            batch_id=commit.idempotency_key(dataset, partition, digest, supersedes),
            source=got.location,
            contract_hash=contract.hash,
            extra=extra or None,
        )
    except _UNSTORABLE as exc:  # a value no check foresaw: held, never a bare traceback
        raise _quarantined(dataset, partition, _unstorable(got, exc), contract.hash) from None
    return IngestResult(ref=manifest.ref, rows=manifest.rows, new=True)


def _read(contract: contracts.Contract, partition: str, day: date) -> tuple[SourceRows, str]:
    """The day's rows and their content hash; unreadable input quarantined (raised as
    `UnreadableInput` naming where), refused input raised as `InputRefused`."""
    dataset = contract.dataset
    try:
        got = read_input(
            contract.source,
            day,
            contract.columns,
            whole_table=contract.is_snapshot,
            na_values=contract.na_values,
            limits=Limits.of(contract.limits),
        )
        if got.df.empty:
            raise SourceError(f"{got.location}: no rows for {dataset} on {day.isoformat()}")
        return got, _storable_hash(got)
    except UnreadableInput as exc:
        raise _quarantined(dataset, partition, exc, contract.hash) from None
    except InputRefused as exc:
        raise InputRefused(
            f"{dataset} {partition}: {exc}; nothing was ingested", source=exc.source, rule=exc.rule
        ) from None


_UNSTORABLE = (TypeError, ValueError, OverflowError, ArrowException)


def _storable_hash(got: SourceRows) -> str:
    """The rows' content hash; rows that cannot even be hashed are unreadable input."""
    try:
        return storage.content_hash(got.df)
    except _UNSTORABLE as exc:
        raise _unstorable(got, exc) from None


def _unstorable(got: SourceRows, exc: Exception) -> UnreadableInput:
    detail = f"the rows cannot be stored: {type(exc).__name__}: {exc}"[:500]
    fetched = got.fetched
    return UnreadableInput(
        f"{got.location}: unreadable input, rule unstorable: {detail}",
        source=got.location,
        rule="unstorable",
        detail=detail,
        name=fetched.name if fetched else "input",
        data=fetched.data if fetched else b"",
    )


def _quarantined(
    dataset: str, partition: str, exc: UnreadableInput, contract_hash: str
) -> UnreadableInput:
    """The input's bytes kept in quarantine; the error to raise, naming where."""
    ref = quarantine_unreadable(dataset, partition, exc, contract_hash=contract_hash)
    return UnreadableInput(
        f"{dataset} {partition}: {exc}; nothing was ingested, the input is kept byte for "
        f"byte at {ref}",
        source=exc.source,
        rule=exc.rule,
        detail=exc.detail,
        name=exc.name,
        quarantine_ref=ref,
    )


def _source_extra(got: SourceRows) -> dict[str, Any]:
    """The delivered bytes, kept once by content; what the manifest says about them."""
    fetched = got.fetched
    if fetched is None:
        return {}
    url = storage.put_content_addressed("raw", fetched.data)
    extra: dict[str, Any] = {
        "source_bytes": {
            "url": url,
            "sha256": fetched.sha256,
            "bytes": len(fetched.data),
            "name": fetched.name,
        }
    }
    if fetched.requested:
        extra["requested_url"] = fetched.requested
    return extra


def safe_file_name(name: str) -> str:
    """The input's own name, unless it would collide with a file the quarantine writes."""
    name = name.replace("/", "_") or "input"
    return f"input-{name}" if name in _RESERVED_NAMES else name


def quarantine_unreadable(
    dataset: str,
    partition: str,
    exc: UnreadableInput,
    *,
    contract_hash: str = "",
    settings: Settings | None = None,
) -> str:
    """Keep unreadable input byte for byte in `quarantine`; return the batch reference.

    `quarantine/<dataset>/<partition>/<batch_id>/` holds the original file under its own name,
    `_reason.json` (source, rule, error, sha256, size) and a manifest, written last, with
    `extra.unreadable = true`. The same bytes quarantined before for the partition are not
    written again: that batch is returned.
    """
    s = settings or get_settings()
    data = exc.data
    sha256 = hashlib.sha256(data).hexdigest()
    name = safe_file_name(exc.name)
    for m in reversed(storage.list_batches("quarantine", dataset, partition, settings=s)):
        extra = m.extra
        if extra.get("unreadable") and (extra.get("sha256"), extra.get("file")) == (sha256, name):
            log.info("unreadable input %s already quarantined at %s", exc.source, m.ref)
            return m.ref
    reason = {
        "dataset": dataset,
        "partition": partition,
        "source": exc.source,
        "reason": exc.rule,
        "error": exc.detail or str(exc),
        "file": name,
        "sha256": sha256,
        "bytes": len(data),
        "quarantined_at": datetime.now(UTC).isoformat(),
    }
    manifest = _write_unreadable(s, reason, data, contract_hash)
    log.warning("unreadable input %s (%s) quarantined at %s", exc.source, exc.rule, manifest.ref)
    return manifest.ref


def _write_unreadable(
    s: Settings, reason: dict[str, Any], data: bytes, contract_hash: str
) -> storage.Manifest:
    """The input file and `_reason.json` under a new quarantine batch, then its manifest (the
    commit), with `extra.unreadable = true` and no parts."""
    dataset, partition, name = reason["dataset"], reason["partition"], reason["file"]
    batch_id = storage.new_batch_id()
    prefix = f"{s.bucket('quarantine')}/{dataset}/{partition}/{batch_id}"
    fs = storage.filesystem(s)
    fs.pipe_file(f"{prefix}/{name}", data)
    fs.pipe_file(f"{prefix}/{REASON}", json.dumps(reason, indent=2).encode())
    manifest = storage.Manifest(
        zone="quarantine",
        bucket=s.bucket("quarantine"),
        dataset=dataset,
        partition=partition,
        batch_id=batch_id,
        parts=[],
        rows=0,
        schema={},
        source=reason["source"],
        contract_hash=contract_hash,
        extra={
            "unreadable": True,
            "reason": reason["reason"],
            "error": reason["error"],
            "file": name,
            "sha256": reason["sha256"],
            "bytes": reason["bytes"],
            "reason_file": REASON,
        },
        created_at=datetime.now(UTC).isoformat(),
    )
    fs.pipe_file(f"{prefix}/{storage.MANIFEST}", manifest.to_json().encode())  # the commit
    return manifest
