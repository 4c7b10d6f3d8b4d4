"""The MLflow model registry: champion/challenger promotion, its audit log, and rollback.

Aliases, not stages: `challenger` (set by training), `champion` (what scoring uses) and
`previous` (the champion before the last move). Every alias move takes a lock (an object
created with a conditional write in the `reports` bucket, so two promotions in two processes
are serialized even outside Airflow's one-slot pool) and writes one audit record: one object
per record under `reports/promotions/<model>/`, with a time-sortable key, never rewritten.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ml import storage, tracking
from ml.errors import RefusedError
from ml.evaluate import DecisionRule, decide, evaluate_version, load_snapshot
from ml.settings import get_settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
AUDIT_PREFIX = "promotions"
LOCK_NAME = "_lock.json"
LOCK_STALE_AFTER_S = 900.0  # a holder that died leaves its lock; after this it is broken


class RegistryError(RefusedError):
    """A registry operation that cannot be done (names the model, version and why)."""


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(tracking.client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def champion_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


# --- lock and audit log -----------------------------------------------------------------------


def _s3():
    import boto3

    s = get_settings()
    return boto3.client("s3", **{k: v for k, v in _boto_kwargs(s).items() if v is not None})


def _boto_kwargs(s) -> dict[str, Any]:
    opts = s.s3_storage_options()
    return {
        "endpoint_url": s.s3_endpoint_url,
        "region_name": s.aws_region,
        "aws_access_key_id": opts["key"],
        "aws_secret_access_key": opts["secret"],
    }


def _holder() -> str:
    import os
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def alias_lock(model_name: str, timeout: float = 300.0) -> Iterator[str]:
    """Serialize alias moves of one model across processes (S3 create-if-absent)."""
    from botocore.exceptions import ClientError

    s3 = _s3()
    bucket = get_settings().bucket("reports")
    key = f"{AUDIT_PREFIX}/{model_name}/{LOCK_NAME}"
    token = uuid.uuid4().hex
    body = json.dumps({"token": token, "holder": _holder(), "since": time.time()}).encode()
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
            break
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in {
                "PreconditionFailed",
                "ConditionalRequestConflict",
                "412",
                "409",
            }:
                raise
        try:
            held = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError:
            continue  # released meanwhile: try again at once
        if time.time() - held.get("since", 0) > LOCK_STALE_AFTER_S:
            log.warning("breaking stale alias lock of %s held by %s", model_name, held)
            s3.delete_object(Bucket=bucket, Key=key)
            continue
        if time.monotonic() > deadline:
            raise RegistryError(
                f"alias moves of {model_name} are locked by {held.get('holder')} "
                f"(s3://{bucket}/{key}); waited {timeout:.0f}s"
            )
        time.sleep(0.2)
    try:
        yield token
    finally:
        with contextlib.suppress(ClientError):
            held = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if held.get("token") == token:
                s3.delete_object(Bucket=bucket, Key=key)


def _audit(model_name: str, record: dict[str, Any]) -> str:
    """Append one record to the model's audit log: a new object, never a rewrite."""
    now = datetime.now(UTC)
    record = {**record, "model_name": model_name, "at": now.isoformat()}
    key = (
        f"{AUDIT_PREFIX}/{model_name}/{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"
        f"-{record['action']}-v{record.get('version')}.json"
    )
    url = storage.write_json("reports", key, record)
    record["audit_record"] = url
    return url


def history(model_name: str) -> list[dict[str, Any]]:
    """Every audit record of a model, oldest first (promotions, refusals, rollbacks)."""
    s = get_settings()
    fs = storage.filesystem(s)
    base = f"{s.bucket('reports')}/{AUDIT_PREFIX}/{model_name}"
    fs.invalidate_cache(base)
    paths = sorted(p for p in fs.glob(f"{base}/*.json") if not p.endswith(LOCK_NAME))
    records = []
    for path in paths:
        record = json.loads(fs.cat_file(path).decode())
        record["audit_record"] = f"s3://{path}"
        records.append(record)
    return records


# --- promotion and rollback -------------------------------------------------------------------


def promote(
    model_name: str,
    version: str,
    eval_snapshot: str,
    rule: DecisionRule | None = None,
    *,
    run_id: str = "",
) -> dict[str, Any]:
    """Move `champion` to `version` when it beats the champion on the same frozen snapshot.

    Under the model's alias lock: both versions are scored on the snapshot (pinned by content
    hash), the rule decides, aliases move (`previous` <- old champion), and the decision with
    its numbers and reasons is tagged on the version and appended to the audit log.
    """
    rule = rule or DecisionRule()
    version = str(version)
    rows, snapshot_hash = load_snapshot(eval_snapshot)
    challenger_metrics = evaluate_version(model_name, version, rows)
    with alias_lock(model_name):
        champion = alias_version(model_name, CHAMPION)  # read under the lock
        champion_metrics = None
        if champion == version:
            promoted, reasons = False, [f"version {version} is already the champion"]
        else:
            if champion is not None:
                try:
                    champion_metrics = evaluate_version(model_name, champion, rows)
                except Exception as exc:  # a champion whose artifacts are gone cannot defend
                    log.warning("champion %s of %s not evaluable: %s", champion, model_name, exc)
                    reasons_pre = [f"champion version {champion} could not be evaluated: {exc}"]
                    promoted, reasons = True, reasons_pre
                else:
                    promoted, reasons = decide(challenger_metrics, champion_metrics, rule)
            else:
                promoted, reasons = decide(challenger_metrics, None, rule)
        mlflow_client = tracking.client()
        if promoted:
            if champion is not None:
                mlflow_client.set_registered_model_alias(model_name, PREVIOUS, champion)
            mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
            if alias_version(model_name, CHALLENGER) == version:  # no longer a challenger
                mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)
        decision = {
            "action": "promote" if promoted else "refuse",
            "version": version,
            "promoted": promoted,
            "forced": bool(rule.force and reasons and reasons[0].startswith("FORCED")),
            "previous_champion": champion,
            "champion_after": version if promoted else champion,
            "reason": "; ".join(reasons),
            "rule": rule.to_dict(),
            "challenger_metrics": challenger_metrics,
            "champion_metrics": champion_metrics,
            "eval_snapshot": eval_snapshot,
            "eval_snapshot_hash": snapshot_hash,
            "eval_rows": len(rows),
            "by": rule.requested_by or _holder(),
            "run_id": run_id,
        }
        decision["audit_record"] = _audit(model_name, decision)
    m = rule.metric
    tags = {
        "promotion.promoted": str(promoted),
        "promotion.forced": str(decision["forced"]),
        "promotion.reason": decision["reason"][:4000],
        "promotion.metric": m,
        "promotion.challenger_score": f"{challenger_metrics[m]:.6f}",
        "promotion.champion_score": (f"{champion_metrics[m]:.6f}" if champion_metrics else "None"),
        "promotion.eval_snapshot": eval_snapshot,
        "promotion.eval_snapshot_hash": snapshot_hash,
        "promotion.audit_record": decision["audit_record"],
    }
    for key, value in tags.items():
        tracking.client().set_model_version_tag(model_name, version, key, value)
    log.info(
        "promotion of %s version %s: %s (%s)", model_name, version, promoted, decision["reason"]
    )
    return decision


def rollback(model_name: str, by: str = "", reason: str = "") -> dict[str, Any]:
    """Move `champion` back to `previous` in one step; audited like a promotion.

    `previous` then points at the champion that preceded the restored one (from the audit
    log), or is removed when there was none.
    """
    with alias_lock(model_name):
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
            "by": by or _holder(),
        }
        record["audit_record"] = _audit(model_name, record)
    if champion is not None:
        tracking.client().set_model_version_tag(
            model_name, champion, "promotion.rolled_back", record["audit_record"]
        )
    log.info("rolled %s back from version %s to %s", model_name, champion, previous)
    return record


def _eval_snapshot_of(dataset: str, model_name: str, version: str) -> str:
    """The evaluation snapshot of the feature set a version was trained on (from its tags)."""
    from ml.drift import feature_set_ref
    from ml.features import sets

    fv = tracking.client().get_model_version(model_name, version).tags.get("feature_version")
    if not fv:
        raise RegistryError(f"{model_name} version {version} has no feature_version tag")
    return sets.read_feature_manifest(feature_set_ref(dataset, fv))["eval_snapshot"]


def promote_challenger(
    dataset: str,
    params: dict[str, Any] | None = None,
    events: dict[Any, list[Any]] | None = None,
    run_id: str = "",
) -> dict[str, Any]:
    """What the promote DAG runs: pick the version (Param, else the triggering challenger event,
    else the `challenger` alias), build the rule from the contract and Params, promote."""
    from ml import contracts

    contract = contracts.load_contract(dataset)
    model_name = contract.model_name
    params = dict(params or {})
    version = params.get("model_version")
    snapshot = None
    if not version:
        extras = [
            e.extra
            for evs in (events or {}).values()
            for e in evs
            if e.extra.get("model_name") == model_name and e.extra.get("version")
        ]
        if extras:
            version, snapshot = str(extras[-1]["version"]), extras[-1].get("eval_snapshot")
    if not version:
        version = alias_version(model_name, CHALLENGER)
    if not version:
        raise RegistryError(
            f"nothing to promote for {model_name}: no 'model_version' param, no challenger "
            "event and no challenger alias"
        )
    snapshot = snapshot or _eval_snapshot_of(dataset, model_name, str(version))
    rule = DecisionRule.from_params(contract.model, params)
    return promote(model_name, str(version), snapshot, rule, run_id=run_id)
