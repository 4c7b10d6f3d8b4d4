"""Ingestion: the rows of partitions from a dataset's source into the `raw` zone, one committed
batch per partition; input that cannot be read is kept byte for byte in `quarantine` instead.

Partitions follow the contract's granularity (`ml.partitions`): keys `2013-01-05T13` (hour),
`2013-01-05` (day), `2013-01` (month) name the layout's partitions `hour=...`, `date=...`,
`month=...`; a snapshot reference table is one partition, `snapshot`. A source with a `pattern`
is read one partition at a time; a source with `history` files (`ml.sources.history`) is read
once per `ingest_partitions` call and split by the partition column.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from pyarrow import ArrowException

from ml import commit, contracts, partitions, storage
from ml.errors import MlpipeError, NotFoundError, TransientError
from ml.partitions import PartitionKeyError
from ml.settings import Settings, get_settings
from ml.sources.errors import InputRefused, SourceError, SourceNotFound, UnreadableInput
from ml.sources.fetch import Fetched
from ml.sources.history import read_history
from ml.sources.limits import Limits
from ml.sources.read import SourceRows, read_partition

log = logging.getLogger(__name__)

REASON = "_reason.json"
# File names the quarantine writes itself: an input file with one of these names is renamed.
_RESERVED_NAMES = {storage.MANIFEST, REASON, "_report.json"}


class DateRangeError(PartitionKeyError):
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


@dataclass(frozen=True)
class PartitionOutcome:
    """What became of one partition of an `ingest_partitions` call: its batch (`result`), or
    the error that stopped it: its message, its type's path (`ml.sources.errors.UnreadableInput`)
    and whether a later try may succeed (`retryable`: the source was not there yet or did not
    answer; a bad input, a refused one or a wrong configuration reads the same next time)."""

    key: str
    result: IngestResult | None = None
    error: str | None = None
    error_type: str | None = None
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None

    @classmethod
    def failed(cls, key: str, exc: BaseException) -> PartitionOutcome:
        kind = type(exc)
        return cls(
            key=key,
            error=str(exc),
            error_type=f"{kind.__module__}.{kind.__qualname__}",
            retryable=isinstance(exc, TransientError | NotFoundError),
        )

    def to_dict(self) -> dict[str, Any]:
        """The XCom form: `{"key", "result": {"ref", "rows", "new"} | None, "error",
        "error_type", "retryable"}`."""
        return {
            "key": self.key,
            "result": self.result.to_dict() if self.result else None,
            "error": self.error,
            "error_type": self.error_type,
            "retryable": self.retryable,
        }


def partition_name(day: date) -> str:
    """The name of a day partition (`date=2013-01-05`); any granularity: `ml.partitions.name`."""
    return partitions.name(day, partitions.DAY)


def days_between(date_from: str, date_to: str | None = None, max_days: int = 366) -> list[str]:
    """Every day from `date_from` to `date_to` inclusive, as ISO dates."""
    return _keys_between(date_from, date_to, partitions.DAY, max_days)


def _keys_between(date_from: str, date_to: str | None, granularity: str, max_days: int = 366):
    try:
        return partitions.keys_between(date_from, date_to, granularity, max_days)
    except PartitionKeyError as exc:
        raise DateRangeError(str(exc)) from None


def plan_partitions(dataset: str, date_from: str, date_to: str | None = None) -> list[str]:
    """The partition keys an ingest run reads for the days `date_from`..`date_to`, by the
    contract's granularity: every hour of those days (`2013-01-05T13`), every day
    (`2013-01-05`), every month touched (`2013-01`); for a snapshot reference table
    (`partition: {granularity: snapshot}`) one day, the last, whose whole table is taken."""
    granularity = _granularity(contracts.load_contract(dataset))
    if granularity == partitions.SNAPSHOT:
        return days_between(date_from, date_to)[-1:]
    return _keys_between(date_from, date_to, granularity)


def ingest_partition(dataset: str, key: date | str) -> IngestResult:
    """Ingest the partition `key` of `dataset` into `raw`; return the batch reference and row
    count. `key`: the partition key of the contract's granularity (a day contract also takes a
    `date`; a snapshot takes the day whose file is read).

    Idempotent: when the newest committed batch of the partition already holds the same
    content, it is returned and nothing is written. Changed content becomes a new batch whose
    manifest names the one it supersedes (`extra.supersedes`); the old batch is kept.

    Raw is raw: the bytes the rows were parsed from are kept as delivered, once per content, at
    `s3://raw/_sources/sha256/<hex>` (`storage.put_content_addressed`); the manifest names them
    (`extra.source_bytes`: url, sha256, bytes, name; rows from several history files: all of
    them in `extra.source_files`; the final URL after redirects is `source`, the one asked for
    `extra.requested_url`). Every column is kept as delivered; validation applies the
    contract's `extra_columns` policy.

    Input that cannot be read (or stored) is kept byte for byte in `quarantine` (see
    `quarantine_unreadable`) and `UnreadableInput` is raised naming the source, the rule
    broken and the quarantine path; nothing reaches `raw`. Input refused before it was taken
    (over the bounds, or from a forbidden address) raises `InputRefused`; a partition with
    nothing delivered raises `SourceNotFound`; neither quarantines anything
    (`ml.sources.errors`).

    A snapshot reference table (planes, airports) is read whole into the partition `snapshot`;
    `key` only fills in a file source's date pattern.
    """
    contract = contracts.load_contract(dataset)
    key = _key(contract, key)
    history = _history(contract, [key]) if contract.source.get("history") else None
    return _ingest_one(contract, key, history)


def ingest_partitions(dataset: str, keys: list[str]) -> list[PartitionOutcome]:
    """Ingest several partitions in one call (one chunk of an ingest run): one outcome per key,
    in order. Each partition becomes its own committed batch, as `ingest_partition` makes it
    (same idempotency, manifest and quarantine); history files are read once for all of them.

    A partition that fails with an mlpipe error (`ml.errors` kinds: `ml.sources.errors`,
    `DateRangeError`, a bad key) is recorded in its outcome and the others go on; any other
    exception (a bug, storage that broke mid-write) is raised: nothing is committed half-way, and
    a retry of the call is safe (committed partitions are found unchanged).
    """
    contract = contracts.load_contract(dataset)
    checked = [_checked_key(contract, raw) for raw in keys]
    good = [key for key in checked if isinstance(key, str)]
    history = _history(contract, good) if contract.source.get("history") else None
    outcomes = []
    for raw, key in zip(keys, checked, strict=True):
        try:
            if not isinstance(key, str):
                raise key
            outcomes.append(PartitionOutcome(key, result=_ingest_one(contract, key, history)))
        except MlpipeError as exc:
            log.warning("%s %s not ingested: %s", dataset, raw, exc)
            outcomes.append(PartitionOutcome.failed(str(raw), exc))
    return outcomes


def _checked_key(contract: contracts.Contract, key: date | str) -> str | MlpipeError:
    try:
        return _key(contract, key)
    except MlpipeError as exc:
        return exc


def _granularity(contract: contracts.Contract) -> str:
    return partitions.granularity_of(contract.partition)


def _key(contract: contracts.Contract, key: date | str) -> str:
    """The canonical key; a snapshot's: the ISO day whose file is read."""
    granularity = _granularity(contract)
    if granularity == partitions.SNAPSHOT:
        return partitions.normalize_key(key, partitions.DAY)
    return partitions.normalize_key(key, granularity)


def _partition(contract: contracts.Contract, key: str) -> str:
    return partitions.name(key, _granularity(contract))


# What a history source delivered to one call: the rows of each key found, or the error that
# stopped the read (raised for every key).
_History = dict[str, SourceRows] | MlpipeError


def _history(contract: contracts.Contract, keys: list[str]) -> _History:
    """The history files read once and split into the rows of `keys`; an unreadable file kept
    in quarantine (under the first key's partition), once."""
    if not keys:
        return {}
    partition = _partition(contract, keys[0])
    try:
        return _guarded(
            contract,
            partition,
            lambda: read_history(
                contract.source,
                str(contract.partition.get("column")),
                _granularity(contract),
                keys,
                contract.columns,
                na_values=contract.na_values,
                limits=Limits.of(contract.limits),
            ),
        )
    except MlpipeError as exc:
        return exc


def _ingest_one(contract: contracts.Contract, key: str, history: _History | None) -> IngestResult:
    partition = _partition(contract, key)
    if history is None:
        got = _guarded(contract, partition, lambda: _read(contract, key))
    elif isinstance(history, MlpipeError):
        raise history
    elif key not in history:
        raise SourceNotFound(
            f"{contract.dataset} {partition}: no row of the history files "
            f"{contract.source.get('history')!r} falls in it (nothing delivered yet)"
        )
    else:
        got = history[key]
    digest = _guarded(contract, partition, lambda: _storable_hash(got))
    return _commit(contract, partition, got, digest)


def _commit(
    contract: contracts.Contract, partition: str, got: SourceRows, digest: str
) -> IngestResult:
    """The rows as the partition's new batch, unless its newest batch holds the same content."""
    dataset = contract.dataset
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


def _read(contract: contracts.Contract, key: str) -> SourceRows:
    """The partition's rows from a pattern source; none is `SourceError`."""
    got = read_partition(
        contract.source,
        key,
        _granularity(contract),
        contract.columns,
        na_values=contract.na_values,
        limits=Limits.of(contract.limits),
    )
    if got.df.empty:
        raise SourceError(f"{got.location}: no rows for {contract.dataset} {key}")
    return got


def _guarded(contract: contracts.Contract, partition: str, read: Callable[[], Any]) -> Any:
    """`read()`, with unreadable input quarantined (raised as `UnreadableInput` naming where)
    and refused input raised as `InputRefused` naming the partition."""
    try:
        return read()
    except UnreadableInput as exc:
        if exc.quarantine_ref:
            raise
        raise _quarantined(contract.dataset, partition, exc, contract.hash) from None
    except InputRefused as exc:
        raise InputRefused(
            f"{contract.dataset} {partition}: {exc}; nothing was ingested",
            source=exc.source,
            rule=exc.rule,
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
    if got.more:
        extra["source_files"] = [_kept(f) for f in (fetched, *got.more)]
    return extra


def _kept(fetched: Fetched) -> dict[str, Any]:
    url = storage.put_content_addressed("raw", fetched.data)
    return {"url": url, "sha256": fetched.sha256, "bytes": len(fetched.data), "name": fetched.name}


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
