"""The quarantine zone: batches (or rows) held back by validation, and what a person does with them.

What lies in `quarantine` is kept as it came from `raw` (PII included: the zone is restricted,
so a person can inspect the very rows that failed and release them). A whole batch held back
(`quarantine_batch`, or `quarantine_rows` over its maximum) has the raw parts and
`_report.json`; a batch of bad rows (`quarantine_rows` within its maximum) has only the bad rows,
each with `_failed_rules`, while its good rows are in `validated` under the same batch id.

- `held(dataset)`: what is held back, with its reason, failed rules and row counts;
- `summary(ref)`: the report summary of one quarantined batch;
- `release(ref, by)`: a person decides the rows are fine: they go to `validated` (PII dropped or
  hashed as the contract says, `_failed_rules` removed) with `released_by` / `released_at` in the
  manifest's extra. A whole batch keeps its batch id; released bad rows join the batch's good
  rows in a new validated batch of the partition, which supersedes the partial one;
- `drop(ref, by)`: a person decides the rows are not wanted: a `_dropped.json` marker is written
  beside them. Nothing is deleted (versioned buckets; nothing is ever lost).

Every action writes an audit record to `reports/quarantine/<dataset>/<partition>/<batch_id>/`
and a `_released.json` or `_dropped.json` marker in the quarantined batch. No printing here:
`mlpipe quarantine ...` (ml/cli.py) prints.
"""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ml import storage
from ml.contracts import Contract, available_datasets
from ml.errors import BadInputError
from ml.settings import Settings, get_settings
from ml.validation.pii import apply_pii, pii_salt, to_validated
from ml.validation.rules import FAILED_RULES, as_contract

log = logging.getLogger(__name__)

AUDIT_PREFIX = "quarantine"  # reports zone: quarantine/<dataset>/<partition>/<batch_id>/...
RELEASED = "_released.json"
DROPPED = "_dropped.json"


class QuarantineError(BadInputError):
    """An action that does not apply to this batch (not quarantined, already released...)."""


@dataclass
class HeldBatch:
    ref: str
    dataset: str
    partition: str
    batch_id: str
    rows: int  # rows in quarantine
    kind: str  # batch (the whole batch) | rows (the bad rows of a batch)
    reason: str
    failed_rules: list[str]
    status: str  # held | released | dropped
    report: str = ""
    validated_rows: int | None = None  # rows mode: the good rows that went on
    created_at: str = ""
    action: dict[str, Any] = field(default_factory=dict)  # the release/drop marker

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status(fs, manifest: storage.Manifest) -> tuple[str, dict[str, Any]]:
    for name, status in ((RELEASED, "released"), (DROPPED, "dropped")):
        path = f"{manifest.prefix}/{name}"
        if fs.exists(path):
            return status, json.loads(fs.cat_file(path).decode())
    return "held", {}


def _held(fs, m: storage.Manifest) -> HeldBatch:
    status, action = _status(fs, m)
    rows_mode = "quarantined_rows" in m.extra
    return HeldBatch(
        ref=m.ref,
        dataset=m.dataset,
        partition=m.partition,
        batch_id=m.batch_id,
        rows=m.rows,
        kind="rows" if rows_mode else "batch",
        reason=str(m.extra.get("quarantine_reason", "contract violation")),
        failed_rules=list(m.extra.get("failed_rules", [])),
        status=status,
        report=str(m.extra.get("validation_report", "")),
        validated_rows=m.extra.get("validated_rows") if rows_mode else None,
        created_at=m.created_at,
        action=action,
    )


def held(
    dataset: str | None = None, *, include_done: bool = False, settings: Settings | None = None
) -> list[HeldBatch]:
    """Quarantined batches of one dataset (all contracts' datasets when None), oldest first;
    released and dropped ones only with `include_done`."""
    s = settings or get_settings()
    fs = storage.filesystem(s)
    out = []
    for ds in [dataset] if dataset else available_datasets():
        for m in storage.list_batches("quarantine", ds, settings=s):
            item = _held(fs, m)
            if include_done or item.status == "held":
                out.append(item)
    return out


def _quarantined(ref: str, s: Settings) -> storage.Manifest:
    target = storage.ref_in_zone(ref, "quarantine", s)
    try:
        return storage.read_manifest(target, s)
    except storage.BatchNotFoundError:
        raise QuarantineError(f"{ref}: no quarantined batch at {target}") from None


def summary(ref: str, *, settings: Settings | None = None) -> dict[str, Any]:
    """A quarantined batch (any zone's ref of it) and its report's failed rules."""
    s = settings or get_settings()
    m = _quarantined(ref, s)
    item = _held(storage.filesystem(s), m)
    try:
        report = storage.read_json(m.file_url("_report.json"), s)
    except FileNotFoundError:
        report = {}
    failed = [r for r in report.get("rules", []) if not r.get("success")]
    return {
        **item.to_dict(),
        "upstream": m.upstream,
        "contract_hash": m.contract_hash,
        "report_html": m.extra.get("validation_report_html", ""),
        "report_rows": report.get("rows"),
        # Input that could not be read at all: its bytes and `_reason.json` are kept, no report.
        "unreadable": m.extra.get("unreadable", False),
        "reason": m.extra.get("reason"),
        "failed": [
            {
                k: r.get(k)
                for k in ("rule", "unexpected_count", "unexpected_percent", "observed_value")
            }
            | {"sample": r.get("unexpected_sample", [])[:5], "error": r.get("error")}
            for r in failed
        ],
    }


def _audit(m: storage.Manifest, action: str, record: dict[str, Any], s: Settings) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{AUDIT_PREFIX}/{m.dataset}/{m.partition}/{m.batch_id}/{stamp}-{action}.json"
    return storage.write_json("reports", key, record, s)


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _check_held(fs, m: storage.Manifest) -> None:
    status, action = _status(fs, m)
    if status != "held":
        raise QuarantineError(
            f"{m.ref} was already {status} by {action.get('by')} at {action.get('at')}"
        )


def _check_readable(m: storage.Manifest) -> None:
    if m.extra.get("unreadable"):
        raise QuarantineError(
            f"{m.ref} holds input that could not be read ({m.extra.get('reason')}): there are no "
            "rows to release; fix the source file and ingest the day again, or drop this batch"
        )


def _release_rows(
    m: storage.Manifest,
    contract: Contract,
    salt: bytes | None,
    extra: dict[str, Any],
    s: Settings,
) -> storage.Manifest:
    """The bad rows of a batch join its good rows in a new validated batch of the partition
    (`_failed_rules` removed, PII dropped or hashed), which supersedes the partial one."""
    good = storage.read_manifest(m.extra["validated"], s)
    batch_id = storage.new_batch_id()
    released = (
        apply_pii(df.drop(columns=[FAILED_RULES], errors="ignore"), contract, salt)
        for df in storage.read_parts(m, s)
    )
    return storage.write_parts(
        [*storage.read_parts(good, s), *released],
        "validated",
        good,
        batch_id=batch_id,
        extra={**extra, "quarantine": m.ref, "quarantined_rows": 0},
        upstream=[*good.upstream, m.ref, good.ref],
        settings=s,
    )


def release(
    ref: str,
    *,
    by: str | None = None,
    note: str = "",
    contract: Contract | str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Copy a quarantined batch (or its bad rows) to `validated`; returns the audit record.

    `contract` (default: the batch's dataset) says which PII columns to drop or hash."""
    s = settings or get_settings()
    fs = storage.filesystem(s)
    m = _quarantined(ref, s)
    _check_held(fs, m)
    _check_readable(m)
    contract = as_contract(contract or m.dataset)
    salt = pii_salt(contract, s)
    who, at = _who(by), datetime.now(UTC).isoformat()
    extra = {"released_by": who, "released_at": at, "released_from": m.ref}
    if note:
        extra["release_note"] = note
    if "quarantined_rows" in m.extra:  # bad rows: join the good rows in a new batch
        target = _release_rows(m, contract, salt, extra, s)
    else:  # a whole batch, as it came from raw: under its batch id
        target = to_validated(m, contract, salt, extra, s)
    record = {
        "action": "release",
        "ref": m.ref,
        "by": who,
        "at": at,
        "note": note,
        "rows": m.rows,
        "failed_rules": m.extra.get("failed_rules", []),
        "validated": target.ref,
    }
    record["audit"] = _audit(m, "release", record, s)
    fs.pipe_file(f"{m.prefix}/{RELEASED}", json.dumps(record, indent=2).encode())
    log.info("%s released by %s to %s", m.ref, who, target.ref)
    return record


def drop(
    ref: str, *, by: str | None = None, reason: str = "", settings: Settings | None = None
) -> dict[str, Any]:
    """Mark a quarantined batch as dropped (a marker and an audit record; no data is deleted)."""
    s = settings or get_settings()
    fs = storage.filesystem(s)
    m = _quarantined(ref, s)
    _check_held(fs, m)
    who = _who(by)
    record = {
        "action": "drop",
        "ref": m.ref,
        "by": who,
        "at": datetime.now(UTC).isoformat(),
        "reason": reason,
        "rows": m.rows,
        "failed_rules": m.extra.get("failed_rules", []),
    }
    record["audit"] = _audit(m, "drop", record, s)
    fs.pipe_file(f"{m.prefix}/{DROPPED}", json.dumps(record, indent=2).encode())
    log.info("%s dropped by %s (kept in storage)", m.ref, who)
    return record
