"""What each console page shows, read through `ml`'s own readers (no path logic here), and the
webhook's handling of an alias move. Blocking calls: the app runs these in a thread pool."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException

from ml import alias_moves, assets, drift, quarantine, registry, storage
from ml.contracts import available_datasets, load_contract
from ml.features import sets
from ml.settings import get_settings
from ml.validation import report as validation_report
from mlpipe_console import links, pages, webhook
from mlpipe_console.pages import cell, link, status, table

log = logging.getLogger(__name__)

RECENT = 10


def webhook_secret() -> str | None:
    secret = get_settings().mlflow_webhook_secret
    return secret.get_secret_value() if secret is not None else None


def model_datasets() -> dict[str, str]:
    """Registered model name -> its dataset, for every contract that trains a model."""
    out = {}
    for dataset in available_datasets():
        contract = load_contract(dataset)
        if contract.features and contract.target:
            out[contract.model_name] = dataset
    return out


def _section(title: str, read, render) -> str:
    """One section; a store that does not answer spoils only its section."""
    try:
        return f"<h3>{pages.escape(title)}</h3>{render(read())}"
    except Exception as exc:  # shown to the person, logged for the operator
        log.warning("console section %s: %s", title, exc)
        return f"<h3>{pages.escape(title)}</h3><p class='bad'>{cell(exc)}</p>"


def _validation_rows(prefix: str, reports: list[dict[str, Any]]) -> str:
    rows = [
        [
            cell(r["partition"]),
            cell(r["batch_id"]),
            status(r["success"]),
            cell(r["rows"]),
            cell(r["failed_rules"]),
            link(links.report_url(prefix, r["html_key"]), "report")
            + " · "
            + link(links.report_url(prefix, r["json_key"]), "JSON"),
        ]
        for r in reports
    ]
    return table(["Partition", "Batch", "Result", "Rows", "Failed rules", ""], rows)


def _quarantine_rows(prefix: str, held: list[quarantine.HeldBatch]) -> str:
    rows = [
        [
            cell(h.partition),
            link(links.page_url(prefix, "quarantine", ref=h.ref), h.batch_id),
            cell(h.kind),
            cell(h.rows),
            f"<span class='{'bad' if h.status == 'held' else 'ok'}'>{cell(h.status)}</span>",
            cell(h.failed_rules),
        ]
        for h in reversed(held)
    ][:RECENT]
    return table(["Partition", "Batch", "Kind", "Rows", "Status", "Failed rules"], rows)


def _promotion_rows(prefix: str, records: list[dict[str, Any]]) -> str:
    rows = []
    for r in list(reversed(records))[:RECENT]:
        key = links.reports_key(r.get("audit_record"), _buckets())
        rows.append(
            [
                cell(r.get("at", "")[:19]),
                link(links.report_url(prefix, key), r.get("action", "")) if key else "",
                cell(r.get("version")),
                cell(r.get("champion_after")),
                cell(r.get("by")),
                cell(r.get("reason")),
                f"<span class='warn'>{cell(r.get('warnings') or [])}</span>",
            ]
        )
    return table(["At (UTC)", "Action", "Version", "Champion after", "By", "Why", "Warnings"], rows)


def _drift_rows(prefix: str, docs: list[dict[str, Any]]) -> str:
    rows = []
    for d in docs:
        key = links.reports_key(d.get("report"), _buckets())
        rows.append(
            [
                link(links.page_url(prefix, "drift", key=key), d["partition"])
                if key
                else cell(d["partition"]),
                cell(d.get("model_version")),
                cell(f"{d.get('max_psi', 0):.3f}"),
                f"<span class='{'bad' if d.get('drifted') else 'ok'}'>"
                f"{cell(d.get('drifted') or 'none')}</span>",
            ]
        )
    return table(["Day", "Model version", "Max PSI", "Drifted features"], rows)


def _buckets() -> dict[str, str]:
    s = get_settings()
    return {z: s.bucket(z) for z in links.ZONES}


def index(prefix: str) -> str:
    """Per dataset: recent validation results, quarantined batches, promotions and drift."""
    models = {ds: m for m, ds in model_datasets().items()}
    parts = []
    for ds in available_datasets():
        parts.append(f"<h2 id='{pages.escape(ds)}'>{pages.escape(ds)}</h2>")
        parts.append(
            _section(
                "Validation results",
                lambda ds=ds: validation_report.recent_reports(ds, RECENT),
                lambda r: _validation_rows(prefix, r),
            )
        )
        parts.append(
            _section(
                "Quarantined batches",
                lambda ds=ds: quarantine.held(ds, include_done=True),
                lambda h: _quarantine_rows(prefix, h),
            )
        )
        if ds in models:
            parts.append(
                _section(
                    f"Promotions of {models[ds]} (audit log)",
                    lambda ds=ds: registry.history(models[ds]),
                    lambda r: _promotion_rows(prefix, r),
                )
            )
            parts.append(
                _section(
                    "Drift",
                    lambda ds=ds: drift.recent_reports(ds, RECENT),
                    lambda d: _drift_rows(prefix, d),
                )
            )
    return "".join(parts)


def report_object(key: str) -> tuple[str, str]:
    """An object of the `reports` zone: ("html" | "svg", its text) or ("page", HTML of a JSON)."""
    if ".." in key.split("/") or not key.endswith((".html", ".svg", ".json")):
        raise HTTPException(404, f"not a report: {key}")
    url = f"s3://{get_settings().bucket('reports')}/{key}"
    try:
        if key.endswith(".json"):
            return "page", pages.json_block(storage.read_json(url))
        data = storage.filesystem().cat_file(url.removeprefix("s3://")).decode()
    except FileNotFoundError:
        raise HTTPException(404, f"no report {key} (not written yet?)") from None
    return ("html" if key.endswith(".html") else "svg"), data


def quarantine_entry(ref: str, prefix: str) -> str:
    try:
        doc = quarantine.summary(ref)
    except quarantine.QuarantineError as exc:
        raise HTTPException(404, str(exc)) from None
    html_key = links.reports_key(doc.get("report_html"), _buckets())
    report = link(links.report_url(prefix, html_key), "validation report") if html_key else ""
    return (
        f"<p>{status(doc['status'] != 'held', doc['status'], doc['status'])} · {report}</p>"
        f"<p>Release or drop: <code>mlpipe quarantine release|drop {cell(ref)}</code></p>"
        + pages.json_block(doc)
    )


def feature_set(ref: str) -> str:
    try:
        manifest = sets.read_feature_manifest(ref)
    except Exception as exc:
        raise HTTPException(404, f"no feature set at {ref}: {exc}") from None
    return pages.json_block(manifest)


def batches(refs: list[str], prefix: str) -> str:
    out = []
    for ref in refs:
        try:
            manifest = storage.read_manifest(ref)
        except storage.BatchNotFoundError as exc:
            out.append(f"<h2>{cell(ref)}</h2><p class='bad'>{cell(exc)}</p>")
            continue
        out.append(f"<h2>{cell(ref)}</h2>{pages.json_block(manifest.__dict__)}")
    return "".join(out)


def validation_reports(refs: list[str], prefix: str) -> str:
    """The validation report of each batch a validate task took (a chunk of a history load)."""
    rows = [
        [cell(ref), link(url, "report")]
        for ref, url in links.validation_report_links(refs, _buckets(), prefix)
    ]
    return table(["batch", "validation report"], rows, "no validated batch")


def drift_page(key: str, prefix: str) -> str:
    _, doc = report_object(key)
    chart_url = storage.read_json(f"s3://{_buckets()['reports']}/{key}").get("chart")
    chart = links.reports_key(chart_url, _buckets())
    src = pages.escape(links.report_url(prefix, chart)) if chart else ""
    return (f"<p><img alt='PSI chart' src='{src}'></p>" if chart else "") + doc


def alias_moved(body: bytes, delivery: str, raise_event) -> tuple[int, dict[str, Any]]:
    """A verified webhook delivery: audit a champion move and raise the champion asset event."""
    event = webhook.alias_event(body)
    if event is None:
        return 200, {"ignored": "not a model version alias event"}
    dataset = model_datasets().get(event["model_name"])
    if dataset is None:
        return 200, {"ignored": f"model {event['model_name']!r} has no data contract here"}
    move = alias_moves.AliasMove(
        event["model_name"], event["alias"], event["version"], event["by"], delivery
    )
    try:
        outcome = alias_moves.handle(move)
    except registry.RegistryError as exc:  # the alias lock is busy: MLflow retries on 503
        return 503, {"error": str(exc)}
    answer: dict[str, Any] = {"dataset": dataset, **outcome.to_dict()}
    if outcome.schedule:
        uri, name = assets.model_alias(move.model_name, assets.CHAMPION)
        extra = {
            "model_name": move.model_name,
            "version": move.version,
            "action": alias_moves.SET,
            "audit_record": outcome.audit_record,
            "by": move.by,
        }
        answer["asset_event"] = raise_event(uri, name, extra)
        if answer["asset_event"] is None:  # the DAG is not parsed yet: MLflow resends (same id)
            return 503, {**answer, "error": f"Airflow has no asset {uri} yet"}
        log.info(
            "champion of %s set to %s in MLflow: asset event %s",
            move.model_name,
            move.version,
            answer["asset_event"],
        )
    return 200, answer
