"""The MLflow model registry's alias moves: champion/challenger promotion, its audit log, rollback.

Aliases, not stages (`ml.model_versions` names them and reads them): `challenger` (set by
training), `champion` (what scoring uses) and `previous` (the champion before the last move).
Every alias move takes the model's alias lock (`ml.alias_lock`: its own prefix in `reports`,
conditional create and delete, so two promotions in two processes are serialized even outside
Airflow's one-slot pool) and writes one audit record: one object per record under
`reports/promotions/<model>/`, with a time-sortable key, created only if absent, never
rewritten.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ml import contracts, storage, tracking
from ml.alias_lock import alias_lock, holder_name
from ml.commit import forget_listings
from ml.errors import RefusedError
from ml.evaluate import evaluate_version, load_snapshot
from ml.model_versions import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    alias_version,
    trained_feature_set,
)
from ml.promotion_rule import DecisionRule, EvaluationError, Verdict, decide
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

AUDIT_PREFIX = "promotions"
LOCK_NAME = "_lock.json"  # where the lock lived before `ml.alias_lock`: never an audit record


class RegistryError(RefusedError):
    """A registry operation that cannot be done (names the model, version and why)."""


# --- lock and audit log -----------------------------------------------------------------------


def _audit(model_name: str, record: dict[str, Any]) -> str:
    """Append one record to the model's audit log: a new object, never a rewrite."""
    now = datetime.now(UTC)
    record = {**record, "model_name": model_name, "at": now.isoformat()}
    key = (
        f"{AUDIT_PREFIX}/{model_name}/{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"
        f"-{record['action']}-v{record.get('version')}.json"
    )
    url = storage.write_json("reports", key, record, create_only=True)
    record["audit_record"] = url
    return url


def history(model_name: str) -> list[dict[str, Any]]:
    """Every audit record of a model, oldest first (promotions, refusals, rollbacks)."""
    s = get_settings()
    fs = storage.filesystem(s)
    base = f"{s.bucket('reports')}/{AUDIT_PREFIX}/{model_name}"
    forget_listings(fs, base)
    paths = sorted(p for p in fs.glob(f"{base}/*.json") if not p.endswith(LOCK_NAME))
    records = []
    for path in paths:
        record = json.loads(fs.cat_file(path).decode())
        record["audit_record"] = f"s3://{path}"
        records.append(record)
    return records


# --- promotion and rollback -------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionDecision:
    """What one promotion decided and on what evidence: appended to the audit log (see
    `audit_fields`) and tagged on the version (`tags`).

    `force`/`requested_by` are what was asked; `forced` says whether forcing changed the
    outcome; `by` is who asked, or the process when nobody said; `approved_by` the person who
    approved the move (contracts with `model.approval: required`).
    """

    model_name: str
    version: str
    promoted: bool
    forced: bool
    reasons: tuple[str, ...]
    previous_champion: str | None
    rule: DecisionRule
    force: bool
    requested_by: str
    by: str
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    eval_snapshot: str
    eval_snapshot_hash: str
    eval_rows: int
    run_id: str = ""
    audit_record: str = ""  # the audit log object (s3://...), once written
    approved_by: str = ""

    @property
    def action(self) -> str:
        return "promote" if self.promoted else "refuse"

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def champion_after(self) -> str | None:
        return self.version if self.promoted else self.previous_champion

    def audit_fields(self) -> dict[str, Any]:
        """The audit record as the log stores it (`ml.registry.history` reads these keys)."""
        return {
            "action": self.action,
            "version": self.version,
            "promoted": self.promoted,
            "forced": self.forced,
            "previous_champion": self.previous_champion,
            "champion_after": self.champion_after,
            "reason": self.reason,
            "rule": {**self.rule.to_dict(), "force": self.force, "requested_by": self.requested_by},
            "challenger_metrics": self.challenger_metrics,
            "champion_metrics": self.champion_metrics,
            "eval_snapshot": self.eval_snapshot,
            "eval_snapshot_hash": self.eval_snapshot_hash,
            "eval_rows": self.eval_rows,
            "by": self.by,
            "run_id": self.run_id,
            "approved_by": self.approved_by or None,  # added last: older records lack it
        }

    def tags(self) -> dict[str, str]:
        """The `promotion.*` tags the decision leaves on the version it judged."""
        m = self.rule.metric
        champion = self.champion_metrics
        return {
            "promotion.promoted": str(self.promoted),
            "promotion.forced": str(self.forced),
            "promotion.reason": self.reason[:4000],
            "promotion.metric": m,
            "promotion.challenger_score": f"{self.challenger_metrics[m]:.6f}",
            "promotion.champion_score": (f"{champion[m]:.6f}" if champion else "None"),
            "promotion.eval_snapshot": self.eval_snapshot,
            "promotion.eval_snapshot_hash": self.eval_snapshot_hash,
            "promotion.audit_record": self.audit_record,
            **({"promotion.approved_by": self.approved_by} if self.approved_by else {}),
        }


def _judge(
    model_name: str,
    version: str,
    champion: str | None,
    rows: pd.DataFrame,
    challenger_metrics: dict[str, float],
    rule: DecisionRule,
    *,
    force: bool,
    requested_by: str,
) -> tuple[Verdict, dict[str, float] | None, str | None]:
    """The verdict on `version` against the current champion, the champion's metrics on the same
    rows (None when there is no champion to measure), and why the champion could not be
    measured (None when it could). A champion that cannot be evaluated is not beaten: the
    promotion is refused unless a person forces it."""
    if champion == version:
        return Verdict(False, (f"version {version} is already the champion",)), None, None
    if champion is None:
        verdict = decide(challenger_metrics, None, rule, force=force, requested_by=requested_by)
        return verdict, None, None
    try:
        champion_metrics = evaluate_version(model_name, champion, rows)
    except Exception as exc:  # any failure: the comparison cannot be made, so it is not made
        error = f"champion version {champion} could not be evaluated ({type(exc).__name__}: {exc})"
        log.warning("promotion of %s version %s: %s", model_name, version, error)
        if force:
            who = requested_by or "a person"
            return Verdict(True, (f"FORCED by {who}: {error}",), forced=True), None, error
        return Verdict(False, (f"refused: {error}",)), None, error
    verdict = decide(
        challenger_metrics, champion_metrics, rule, force=force, requested_by=requested_by
    )
    return verdict, champion_metrics, None


def _move_champion(model_name: str, version: str, champion: str | None) -> None:
    """`champion` -> version, `previous` -> the old champion; `challenger` is cleared when it
    pointed at the promoted version."""
    mlflow_client = tracking.client()
    if champion is not None:
        mlflow_client.set_registered_model_alias(model_name, PREVIOUS, champion)
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
    if alias_version(model_name, CHALLENGER) == version:  # no longer a challenger
        mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)


def _tag_version(decision: PromotionDecision) -> None:
    """Leave the decision on the version it judged (and in the log)."""
    name, version = decision.model_name, decision.version
    for key, value in decision.tags().items():
        tracking.client().set_model_version_tag(name, version, key, value)
    log.info(
        "promotion of %s version %s: %s (%s)", name, version, decision.promoted, decision.reason
    )


def promote(
    model_name: str,
    version: str,
    eval_snapshot: str,
    rule: DecisionRule | None = None,
    *,
    force: bool = False,
    requested_by: str = "",
    run_id: str = "",
    approved_by: str = "",
) -> PromotionDecision:
    """Move `champion` to `version` when it beats the champion on the same frozen snapshot
    (or when `force`d by a person, `requested_by`; `approved_by`: who approved the move).

    Under the model's alias lock: both versions are scored on the snapshot (pinned by content
    hash), the rule decides, aliases move (`previous` <- old champion), and the decision with
    its numbers and reasons is tagged on the version and appended to the audit log.
    """
    rule = rule or DecisionRule()
    version = str(version)
    rows, snapshot_hash = load_snapshot(eval_snapshot)
    challenger_metrics = evaluate_version(model_name, version, rows)
    with alias_lock(model_name) as lock:
        champion = alias_version(model_name, CHAMPION)  # read under the lock
        verdict, champion_metrics, error = _judge(
            model_name,
            version,
            champion,
            rows,
            challenger_metrics,
            rule,
            force=force,
            requested_by=requested_by,
        )
        if verdict.promoted:
            lock.check()  # fencing: a lock broken as stale moves nothing
            _move_champion(model_name, version, champion)
        decision = _decision(
            model_name,
            version,
            verdict,
            champion,
            rule,
            (challenger_metrics, champion_metrics),
            (eval_snapshot, snapshot_hash, len(rows)),
            force=force,
            requested_by=requested_by,
            run_id=run_id,
            approved_by=approved_by,
        )
        audit = _audit(model_name, decision.audit_fields())
        decision = dataclasses.replace(decision, audit_record=audit)
    _tag_version(decision)
    if error and not decision.promoted:
        _refused_for_an_error(decision, error)
    return decision


def _refused_for_an_error(decision: PromotionDecision, error: str) -> None:
    """A refusal because a version could not be measured fails the task (it is not a verdict on
    the numbers); the refusal is already audited and tagged."""
    raise EvaluationError(
        f"promotion of {decision.model_name} version {decision.version} refused: {error}; "
        f"champion unchanged; audit {decision.audit_record}. Fix the champion, or force the "
        "promotion (recorded as forced)"
    )


def rollback(model_name: str, by: str = "", reason: str = "") -> dict[str, Any]:
    """Move `champion` back to `previous` in one step; audited like a promotion.

    `previous` then points at the champion that preceded the restored one (from the audit
    log), or is removed when there was none.
    """
    with alias_lock(model_name) as lock:
        champion = alias_version(model_name, CHAMPION)
        previous = alias_version(model_name, PREVIOUS)
        if previous is None:
            raise RegistryError(
                f"cannot roll back {model_name}: no {PREVIOUS!r} alias "
                f"(champion is {champion or 'unset'}; see `mlpipe model history {model_name}`)"
            )
        before_previous = None
        for record in reversed(history(model_name)):
            if record.get("champion_after") == previous and record["action"] in (
                "promote",
                "rollback",
            ):
                before_previous = record.get("previous_champion")
                break
        lock.check()  # fencing: a lock broken as stale moves nothing
        mlflow_client = tracking.client()
        mlflow_client.set_registered_model_alias(model_name, CHAMPION, previous)
        if before_previous and before_previous not in (previous, champion):
            mlflow_client.set_registered_model_alias(model_name, PREVIOUS, before_previous)
        else:
            mlflow_client.delete_registered_model_alias(model_name, PREVIOUS)
        record = {
            "action": "rollback",
            "version": previous,
            "promoted": True,
            "forced": False,
            "previous_champion": champion,
            "champion_after": previous,
            "rolled_back": champion,
            "previous_after": before_previous
            if before_previous not in (None, previous, champion)
            else None,
            "reason": reason or f"rollback of version {champion}",
            "by": by or holder_name(),
        }
        record["audit_record"] = _audit(model_name, record)
    if champion is not None:
        tracking.client().set_model_version_tag(
            model_name, champion, "promotion.rolled_back", record["audit_record"]
        )
    log.info("rolled %s back from version %s to %s", model_name, champion, previous)
    return record


def promote_challenger(
    dataset: str,
    rule: DecisionRule | None = None,
    *,
    version: str | None = None,
    eval_snapshot: str | None = None,
    force: bool = False,
    requested_by: str = "",
    run_id: str = "",
    approved_by: str = "",
) -> PromotionDecision:
    """What the promote DAG runs: the given version (a person's, or the challenger event's),
    else the `challenger` alias; on the given snapshot, else the evaluation snapshot of the
    feature set the version was trained on; by the given rule, else the contract's."""
    model_name, version, snapshot, rule = _candidate(dataset, version, eval_snapshot, rule)
    return promote(
        model_name,
        version,
        snapshot,
        rule,
        force=force,
        requested_by=requested_by,
        run_id=run_id,
        approved_by=approved_by,
    )


def preview_challenger(
    dataset: str,
    rule: DecisionRule | None = None,
    *,
    version: str | None = None,
    eval_snapshot: str | None = None,
    force: bool = False,
    requested_by: str = "",
) -> PromotionDecision:
    """What `promote_challenger` would decide now, with the same evidence, but moving nothing
    and recording nothing: what a person is shown before approving. The move itself decides
    again under the lock (the champion may have changed while the person thought)."""
    model_name, version, snapshot, rule = _candidate(dataset, version, eval_snapshot, rule)
    rows, snapshot_hash = load_snapshot(snapshot)
    challenger_metrics = evaluate_version(model_name, version, rows)
    champion = alias_version(model_name, CHAMPION)
    verdict, champion_metrics, _ = _judge(
        model_name,
        version,
        champion,
        rows,
        challenger_metrics,
        rule,
        force=force,
        requested_by=requested_by,
    )
    return _decision(
        model_name,
        version,
        verdict,
        champion,
        rule,
        (challenger_metrics, champion_metrics),
        (snapshot, snapshot_hash, len(rows)),
        force=force,
        requested_by=requested_by,
    )


def _decision(
    model_name: str,
    version: str,
    verdict: Verdict,
    champion: str | None,
    rule: DecisionRule,
    metrics: tuple[dict[str, float], dict[str, float] | None],
    snapshot: tuple[str, str, int],
    **asked: Any,
) -> PromotionDecision:
    """The decision record: `metrics` (challenger's, champion's), `snapshot` (URL, content
    hash, rows), `asked` (force, requested_by, and run_id / approved_by when known)."""
    return PromotionDecision(
        model_name=model_name,
        version=version,
        promoted=verdict.promoted,
        forced=verdict.forced,
        reasons=verdict.reasons,
        previous_champion=champion,
        rule=rule,
        by=asked["requested_by"] or holder_name(),
        challenger_metrics=metrics[0],
        champion_metrics=metrics[1],
        eval_snapshot=snapshot[0],
        eval_snapshot_hash=snapshot[1],
        eval_rows=snapshot[2],
        **asked,
    )


def _candidate(
    dataset: str, version: str | None, eval_snapshot: str | None, rule: DecisionRule | None
) -> tuple[str, str, str, DecisionRule]:
    """(model name, version, evaluation snapshot, rule) of a promotion of `dataset`'s model."""
    contract = contracts.load_contract(dataset)
    model_name = contract.model_name
    version = version or alias_version(model_name, CHALLENGER)
    if not version:
        raise RegistryError(
            f"nothing to promote for {model_name}: no 'model_version' param, no challenger "
            "event and no challenger alias"
        )
    version = str(version)
    snapshot = eval_snapshot or trained_feature_set(dataset, model_name, version)["eval_snapshot"]
    return model_name, version, snapshot, rule or DecisionRule.for_contract(contract.model)


def append_audit(model_name: str, record: dict[str, Any]) -> str:
    """Append one record (with at least `action` and `version`) to a model's audit log; the
    caller holds `alias_lock` when the record is about an alias move. Returns its s3:// URL."""
    return _audit(model_name, record)
