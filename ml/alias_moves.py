"""Alias moves seen from the registry's side (MLflow webhooks): was a move already audited by our
own promotion or rollback, and if not, its audit record, with a warning when it went around the
guardrails.

Why a move is never audited (nor scored) twice: our promotion and rollback move `champion` while
they hold the model's alias lock (`ml.registry.alias_lock`) and write their audit record before
they release it; they also raise the champion asset event themselves (the promote DAG's outlet,
the CLI's rollback). A webhook about a move is handled under the same lock, so it finds that
record: the newest champion record already names the version the alias now points at, and the
move is acknowledged, nothing more. Any other move (a person in the MLflow UI, a script with a
plain `MlflowClient`) finds no such record: it gets one here (`alias_set` or `alias_deleted`),
and the caller raises the champion asset event. A second delivery of the same webhook finds the
record the first wrote, so it is not scored twice either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ml import registry
from ml.assets import CHAMPION

log = logging.getLogger(__name__)

SET, DELETED = "alias_set", "alias_deleted"
# Audit actions after which `champion_after` says where `champion` points.
CHAMPION_ACTIONS = ("promote", "rollback", SET, DELETED)
# Actions after which a version has passed the guardrails (a rollback restores such a version).
GUARDED_ACTIONS = ("promote", "rollback")
SOURCE = "mlflow-webhook"


@dataclass(frozen=True)
class AliasMove:
    """An alias of a registered model set to a version (`version` None: the alias was deleted),
    as MLflow reported it; `by` names who moved it, as far as the report says."""

    model_name: str
    alias: str
    version: str | None
    by: str
    delivery_id: str = ""


@dataclass(frozen=True)
class MoveOutcome:
    """What became of a reported move: `recorded` (a new audit record), `schedule` (the caller
    raises the champion asset event so scoring runs), why, and the record it refers to."""

    recorded: bool
    schedule: bool
    reason: str
    audit_record: str = ""
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "schedule": self.schedule,
            "reason": self.reason,
            "audit_record": self.audit_record,
            "warnings": list(self.warnings),
        }


def _moves_champion(record: dict[str, Any]) -> bool:
    action = record.get("action")
    return action in CHAMPION_ACTIONS and (action != "promote" or bool(record.get("promoted")))


def last_champion_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest audit record that moved `champion` (records oldest first)."""
    return next((r for r in reversed(records) if _moves_champion(r)), None)


def already_audited(records: list[dict[str, Any]], move: AliasMove) -> dict[str, Any] | None:
    """The record that already says `champion` points where the move put it, if the newest
    champion record does (our promotion, rollback, or an earlier delivery of this webhook)."""
    last = last_champion_record(records)
    if last is None:
        return None
    after = last.get("champion_after")
    return last if (None if after is None else str(after)) == move.version else None


def guardrail_warnings(records: list[dict[str, Any]], move: AliasMove) -> list[str]:
    """Why a move went around the guardrails: the version never beat a champion on a frozen
    evaluation snapshot (no promotion or rollback record puts it there), or the alias is gone."""
    if move.version is None:
        return [f"{CHAMPION!r} was deleted: scoring has no model until it is set again"]
    guarded = [
        r
        for r in records
        if r.get("action") in GUARDED_ACTIONS
        and r.get("promoted")
        and str(r.get("champion_after")) == move.version
    ]
    if guarded:
        return []
    warnings = [
        f"version {move.version} has no promotion record: it never beat the champion on a "
        "frozen evaluation snapshot (moved outside the promote DAG)"
    ]
    refused = [
        r for r in records if r.get("action") == "refuse" and r.get("version") == move.version
    ]
    if refused:
        warnings.append(f"its last evaluation refused it: {refused[-1].get('reason')}")
    return warnings


def move_record(records: list[dict[str, Any]], move: AliasMove) -> dict[str, Any]:
    """The audit record of a move made outside our promotion and rollback."""
    last = last_champion_record(records)
    previous = last.get("champion_after") if last else None
    warnings = guardrail_warnings(records, move)
    what = f"set to version {move.version}" if move.version else "deleted"
    return {
        "action": SET if move.version else DELETED,
        "version": move.version,
        "promoted": move.version is not None,
        "forced": False,
        "previous_champion": previous,  # as the audit log knew it
        "champion_after": move.version,
        "reason": f"{CHAMPION!r} {what} in the MLflow registry by {move.by}",
        "warnings": warnings,
        "by": move.by,
        "source": SOURCE,
        "delivery_id": move.delivery_id,
    }


def _redelivered(record: dict[str, Any], move: AliasMove) -> bool:
    return (
        record.get("source") == SOURCE
        and bool(move.delivery_id)
        and record.get("delivery_id") == move.delivery_id
    )


def handle(move: AliasMove, *, lock_timeout: float = 20.0) -> MoveOutcome:
    """Audit a reported move of `champion` unless our promotion or rollback already did.

    Other aliases are not audited here (our promotion audits its own `previous`/`challenger`
    moves within its record). Raises `registry.RegistryError` when the alias lock is not had
    within `lock_timeout` seconds (the sender should retry)."""
    if move.alias != CHAMPION:
        return MoveOutcome(False, False, f"alias {move.alias!r} of {move.model_name}: not audited")
    with registry.alias_lock(move.model_name, timeout=lock_timeout):
        records = registry.history(move.model_name)
        done = already_audited(records, move)
        if done is not None and _redelivered(done, move):
            # MLflow resends a delivery (same id) when the first attempt failed, possibly after
            # its record was written: raise the event again (scoring a day again is idempotent).
            return MoveOutcome(False, move.version is not None, "redelivery", done["audit_record"])
        if done is not None:
            reason = f"already audited ({done.get('action')} by {done.get('by')})"
            return MoveOutcome(False, False, reason, str(done.get("audit_record", "")))
        record = move_record(records, move)
        url = registry.append_audit(move.model_name, record)
    for warning in record["warnings"]:
        log.warning("%s %s: %s (audit %s)", move.model_name, record["reason"], warning, url)
    return MoveOutcome(
        True, move.version is not None, record["reason"], url, tuple(record["warnings"])
    )
