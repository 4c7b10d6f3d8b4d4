"""Extra links from a task to its evidence, built from what the task returned (its XCom).

Pure URL building (no Airflow, no storage reads): the tasks already return small references
(batch refs, feature set refs, MLflow run ids and versions, audit records, drift reports), so a
link needs neither a DAG change nor a read of the object store. Objects in storage open in the
plugin's own pages (`PREFIX/...`, behind Airflow's login); MLflow objects in the MLflow UI.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

VALIDATION = "Validation report"
QUARANTINE = "Quarantine entry"
FEATURES = "Feature set"
RUN = "MLflow run"
VERSION = "Model version"
PROMOTION = "Promotion record"
DRIFT = "Drift chart"
PREDICTIONS = "Predictions"
ZONES = ("validated", "quarantine", "features", "predictions", "reports")  # `buckets` keys
NAMES = (VALIDATION, QUARANTINE, FEATURES, RUN, VERSION, PROMOTION, DRIFT, PREDICTIONS)


def mlflow_run_url(ui: str, run_id: str) -> str:
    return f"{ui.rstrip('/')}/#/runs/{quote(run_id)}"


def mlflow_version_url(ui: str, model_name: str, version: str) -> str:
    return f"{ui.rstrip('/')}/#/models/{quote(model_name)}/versions/{quote(str(version))}"


def page_url(prefix: str, page: str, **params: Any) -> str:
    """A page of the plugin; list values repeat their parameter."""
    query = urlencode(params, doseq=True)
    return f"{prefix}/{page}" + (f"?{query}" if query else "")


def report_url(prefix: str, key: str) -> str:
    """An object of the `reports` zone, rendered by the plugin."""
    return f"{prefix}/reports/{quote(key)}"


def _bucket_key(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _batch_links(ref: str, buckets: dict[str, str], prefix: str) -> dict[str, str]:
    """A validated or quarantined batch: its validation report, and its quarantine entry."""
    from ml.validation.report import report_key  # deferred: the plugin loads ml only for links

    bucket, key = _bucket_key(ref)
    parts = key.strip("/").split("/")
    links: dict[str, str] = {}
    if bucket in (buckets["validated"], buckets["quarantine"]) and len(parts) == 3:
        links[VALIDATION] = report_url(prefix, f"{report_key(*parts)}.html")
    if bucket == buckets["quarantine"] and len(parts) == 3:
        links[QUARANTINE] = page_url(prefix, "quarantine", ref=ref)
    if bucket == buckets["features"]:
        links[FEATURES] = page_url(prefix, "feature-set", ref=ref)
    return links


def _chunk_links(outcomes: list, buckets: dict[str, str], prefix: str) -> dict[str, str]:
    """A validate task's chunk (`[{"ref", "validated" | "held" | "error"}]`): one batch, its own
    links; several, the page listing each one's validation report."""
    refs = [o["validated"] for o in outcomes if isinstance(o, dict) and o.get("validated")]
    if len(outcomes) == 1 and len(refs) == 1:
        return _batch_links(refs[0], buckets, prefix)
    return {VALIDATION: page_url(prefix, "validation-reports", ref=refs)} if refs else {}


def validation_report_links(refs: list[str], buckets: dict[str, str], prefix: str) -> list:
    """(batch ref, its validation report's page) of each validated or quarantined batch."""
    out = []
    for ref in refs:
        if url := _batch_links(ref, buckets, prefix).get(VALIDATION):
            out.append((ref, url))
    return out


def reports_key(url: Any, buckets: dict[str, str]) -> str | None:
    """The key of an s3:// URL in the `reports` bucket (None for anything else)."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        return None
    bucket, key = _bucket_key(url)
    return key if bucket == buckets["reports"] and key else None


# long: one branch per kind of reference a task returns, in one place
def evidence_links(
    value: Any,
    *,
    buckets: dict[str, str],
    prefix: str,
    mlflow_ui: str,
    model_name: str | None = None,
) -> dict[str, str]:
    """Link name -> URL for every piece of evidence a task's return value names.

    `buckets`: zone -> bucket name; `prefix`: the plugin's URL prefix; `model_name`: the DAG's
    model, for values that name a version without its model (the promote task's)."""
    if isinstance(value, str) and value.startswith("s3://"):
        return _batch_links(value, buckets, prefix)
    if isinstance(value, list):
        return _chunk_links(value, buckets, prefix)
    if not isinstance(value, dict):
        return {}
    links: dict[str, str] = {}
    ref = value.get("ref")
    if isinstance(ref, str) and ref.startswith("s3://"):
        links.update(_batch_links(ref, buckets, prefix))
    if value.get("run_id"):
        links[RUN] = mlflow_run_url(mlflow_ui, str(value["run_id"]))
    name = value.get("model_name") or model_name
    version = value.get("version") or value.get("model_version")
    if name and version:
        links[VERSION] = mlflow_version_url(mlflow_ui, str(name), str(version))
    if key := reports_key(value.get("audit_record"), buckets):
        links[PROMOTION] = report_url(prefix, key)
    drift_keys = [k for url in value.get("drift_reports") or [] if (k := reports_key(url, buckets))]
    if drift_keys:
        links[DRIFT] = page_url(prefix, "drift", key=drift_keys[-1])
    refs = [r for r in value.get("refs") or [] if isinstance(r, str)]
    if refs and all(_bucket_key(r)[0] == buckets["predictions"] for r in refs):
        links[PREDICTIONS] = page_url(prefix, "batches", ref=refs)
    return links
