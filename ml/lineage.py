"""Lineage both ways, read from manifests and the registry (nothing is stored twice).

Upstream of a predictions batch: the model version that scored it, its MLflow run, the feature
set it was trained on, the validated batches (scored and trained on), their raw batches and the
raw batches' sources. Downstream of a raw batch: the validated (or quarantined) batches made
from it, the feature sets that read them, the model versions trained on those, and the
predictions made from them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ml import contracts, storage, tracking
from ml.commit import forget_listings
from ml.errors import NotFoundError
from ml.features import sets
from ml.model_versions import version_uri
from ml.settings import get_settings

log = logging.getLogger(__name__)


class LineageError(NotFoundError):
    """A reference that lineage cannot follow (names it and what was expected)."""


def _batch(ref: str) -> dict[str, Any]:
    m = storage.read_manifest(ref)
    return {
        "ref": m.ref,
        "zone": m.zone,
        "rows": m.rows,
        "created_at": m.created_at,
        "content_hash": m.content_hash,
        "contract_hash": m.contract_hash,
        "source": m.source,
        "upstream": m.upstream,
    }


def _validated_with_raw(refs: list[str]) -> list[dict[str, Any]]:
    out = []
    for ref in refs:
        node = _batch(ref)
        node["raw"] = [_batch(r) for r in node.pop("upstream")]
        out.append(node)
    return out


def upstream(predictions_ref: str) -> dict[str, Any]:
    """Walk from a predictions batch to model, run, features, validated and raw batches."""
    try:
        pred = storage.read_manifest(predictions_ref)
    except (storage.BadBatchRef, ValueError) as exc:
        raise LineageError(f"{predictions_ref}: {exc}") from None
    if pred.zone != "predictions":
        raise LineageError(
            f"{predictions_ref} is a {pred.zone!r} batch; lineage walks up from a predictions "
            "batch (use --raw to walk down from a raw batch)"
        )
    model_name = pred.extra["model_name"]
    version = str(pred.extra["model_version"])
    client = tracking.client()
    mv = client.get_model_version(model_name, version)
    run = client.get_run(mv.run_id)
    fv = mv.tags.get("feature_version") or pred.extra.get("feature_version")
    fm = sets.read_feature_manifest(sets.feature_set_ref(pred.dataset, fv))
    return {
        "predictions": {
            "ref": pred.ref,
            "rows": pred.rows,
            "partition": pred.partition,
            "created_at": pred.created_at,
            "threshold": pred.extra.get("threshold"),
            "drift_report": pred.extra.get("drift_report"),
        },
        "model": {
            "name": model_name,
            "version": version,
            "uri": version_uri(model_name, version),
            "source": mv.source,
            "promotion": mv.tags.get("promotion.audit_record"),
            "aliases": list(getattr(mv, "aliases", []) or []),
        },
        "mlflow_run": {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "url": f"{get_settings().mlflow_tracking_uri}/#/experiments/"
            f"{run.info.experiment_id}/runs/{run.info.run_id}",
        },
        "feature_set": {
            "ref": fm["ref"],
            "feature_version": fm["feature_version"],
            "contract_hash": fm["contract_hash"],
            "eval_snapshot": fm["eval_snapshot"],
        },
        "scored_batches": _validated_with_raw(pred.upstream),
        "training_batches": _validated_with_raw(fm["inputs"]),
    }


def _all_feature_manifests() -> list[dict[str, Any]]:
    s = get_settings()
    fs = storage.filesystem(s)
    base = s.bucket("features")
    forget_listings(fs, base)
    return [json.loads(fs.cat_file(p).decode()) for p in fs.glob(f"{base}/*/*/{storage.MANIFEST}")]


def downstream(raw_ref: str) -> dict[str, Any]:
    """Everything made from a raw batch: validated/quarantined batches, feature sets, model
    versions trained on them, predictions made from them."""
    raw = storage.read_manifest(raw_ref)
    if raw.zone != "raw":
        raise LineageError(f"{raw_ref} is a {raw.zone!r} batch; --raw takes a raw batch")
    checked = [
        m
        for zone in ("validated", "quarantine")
        for m in storage.list_batches(zone, raw.dataset, raw.partition)
        if raw.ref in m.upstream
    ]
    checked_refs = {m.ref for m in checked}
    feature_sets = [fm for fm in _all_feature_manifests() if checked_refs & set(fm["inputs"])]
    client = tracking.client()
    models = []
    for fm in feature_sets:
        model_name = contracts.load_contract(fm["dataset"]).model_name
        for mv in client.search_model_versions(f"name='{model_name}'"):
            if mv.tags.get("feature_version") == fm["feature_version"]:
                models.append(
                    {
                        "name": model_name,
                        "version": str(mv.version),
                        "run_id": mv.run_id,
                        "feature_version": fm["feature_version"],
                    }
                )
    predictions = []
    for dataset in contracts.available_datasets():
        for m in storage.list_batches("predictions", dataset):
            if checked_refs & set(m.upstream):
                predictions.append(
                    {
                        "ref": m.ref,
                        "rows": m.rows,
                        "model_version": m.extra.get("model_version"),
                        "model_name": m.extra.get("model_name"),
                    }
                )
    return {
        "raw": _batch(raw.ref),
        "checked": [
            {"ref": m.ref, "zone": m.zone, "rows": m.rows, "created_at": m.created_at}
            for m in checked
        ],
        "feature_sets": [
            {"ref": fm["ref"], "feature_version": fm["feature_version"]} for fm in feature_sets
        ],
        "model_versions": sorted(models, key=lambda m: (m["name"], int(m["version"]))),
        "predictions": predictions,
    }


def format_upstream(tree: dict[str, Any]) -> str:
    p, m, r, f = tree["predictions"], tree["model"], tree["mlflow_run"], tree["feature_set"]
    lines = [
        f"predictions {p['ref']}  ({p['rows']} rows, {p['partition']})",
        f"  drift report: {p['drift_report'] or '-'}",
        f"<- model {m['name']} version {m['version']}  ({m['uri']})",
        f"     promotion audit: {m['promotion'] or '-'}",
        f"<- MLflow run {r['run_id']}  ({r['status']})  {r['url']}",
        f"<- feature set {f['feature_version']}  {f['ref']}",
    ]
    for title, key in (("scored", "scored_batches"), ("trained on", "training_batches")):
        lines.append(f"<- validated batches {title}:")
        for v in tree[key]:
            lines.append(f"     {v['ref']}  ({v['rows']} rows)")
            for raw in v["raw"]:
                lines.append(f"       <- raw {raw['ref']}  <- source {raw['source'] or '-'}")
    return "\n".join(lines)


def format_downstream(tree: dict[str, Any]) -> str:
    raw = tree["raw"]
    lines = [f"raw {raw['ref']}  ({raw['rows']} rows, source {raw['source'] or '-'})"]
    lines += [f"-> {c['zone']} {c['ref']}  ({c['rows']} rows)" for c in tree["checked"]]
    lines += [f"-> feature set {f['feature_version']}  {f['ref']}" for f in tree["feature_sets"]]
    lines += [
        f"-> model {m['name']} version {m['version']}  (run {m['run_id']})"
        for m in tree["model_versions"]
    ]
    lines += [
        f"-> predictions {p['ref']}  ({p['rows']} rows, {p['model_name']} v{p['model_version']})"
        for p in tree["predictions"]
    ]
    if len(lines) == 1:
        lines.append("(nothing downstream yet)")
    return "\n".join(lines)
