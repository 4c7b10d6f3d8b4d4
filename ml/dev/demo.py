"""The demo: the local stack up, then the whole chain on real 2013 flights, driven through Airflow.

It only triggers the ingest DAGs (the dataset and its reference tables) over the REST API; every later DAG is started by the assets
the one before it updates. It follows the runs to the end and summarises what they produced.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ml import contracts, partitions, storage, tracking
from ml.alerts import airflow_url
from ml.dev.airflow_api import AirflowClient
from ml.dev.stack import auth, lifecycle
from ml.features import joins
from ml.model_versions import CHALLENGER, CHAMPION, alias_version
from ml.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionSummary:
    """The model version that holds `champion` after the demo."""

    name: str
    champion_version: str
    test_roc_auc: str | None
    promotion: str | None
    run_id: str


@dataclass(frozen=True)
class ChallengerSummary:
    """A newer version that was not promoted, and why."""

    version: str
    decision: str | None


@dataclass(frozen=True)
class PredictionsSummary:
    """The newest predictions batch."""

    ref: str
    rows: int
    model_version: str | None


@dataclass
class DemoSummary:
    """What the demo's runs produced (`to_dict()` is the `mlpipe demo --json` output)."""

    ok: bool
    dates: str
    runs: dict[str, str]  # DAG id -> final state
    ingested: dict[str, int]  # dataset -> rows
    validated: dict[str, int]
    quarantined: dict[str, int]
    model: ChampionSummary | None = None
    challenger: ChallengerSummary | None = None
    predictions: PredictionsSummary | None = None
    urls: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the sections that are there, in field order."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def chain_dag_ids(dataset: str) -> dict[str, str]:
    return {
        stage: f"{stage}_{dataset}"
        for stage in ("ingest", "validate", "preprocess", "train", "promote", "batch_score")
    }


def wait_for_asset_run(client: AirflowClient, dag_id: str, since: datetime, timeout: float) -> dict:
    """The first run of `dag_id` started by an asset event after `since`, once it ended.

    A DAG that also has a time schedule (batch scoring) may have scheduled runs besides."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in client.runs_since(dag_id, since) if r["run_type"] == "asset_triggered"]
        if runs:
            left = max(deadline - time.monotonic(), 1.0)
            return client.wait_for_run(dag_id, runs[0]["dag_run_id"], left)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no asset-triggered run of {dag_id} within {timeout:.0f}s")
        time.sleep(2)


def run_chain(
    client: AirflowClient,
    dataset: str,
    date_from: str,
    date_to: str,
    timeout: float = 480.0,
    approve: bool = False,
) -> dict[str, dict]:
    """Trigger ingestion of `dataset` and its reference tables and follow the chain to scoring.

    A contract with `model.approval: required` waits for a person's answer at the promotion
    (the run's page is logged); `approve`: this client approves it (tests).
    Returns the final state of one run per DAG, keyed by DAG id.
    """
    contract = contracts.load_contract(dataset)
    references = joins.reference_datasets(contract)  # joins and lookups (planes, airports)
    ids = chain_dag_ids(dataset)
    ref_ids = {name: chain_dag_ids(name) for name in references}
    all_ids = [*ids.values()] + [d for r in ref_ids.values() for d in (r["ingest"], r["validate"])]
    client.wait_for_dags(all_ids, timeout=min(timeout, 240))
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(deadline - time.monotonic(), 1.0)

    conf = {"date_from": date_from, "date_to": date_to}
    runs: dict[str, dict] = {}
    # Lookup snapshots first: preprocessing reads the latest validated one when it starts.
    snapshots = {r.dataset for r in joins.references_of(contract) if r.snapshot}
    for group in (
        [d for name, d in ref_ids.items() if name in snapshots],
        [d for name, d in ref_ids.items() if name not in snapshots] + [ids],
    ):
        since_group = datetime.now(UTC)
        triggered = {d["ingest"]: client.trigger(d["ingest"], conf) for d in group}
        for dag_id, run_id in triggered.items():
            runs[dag_id] = client.wait_for_run(dag_id, run_id, left())
        for d in group:
            runs[d["validate"]] = client.wait_for_new_run(d["validate"], since_group, left())
    since = since_group
    for stage in ("preprocess", "train", "promote"):
        if stage == "promote" and contract.approval_required:
            runs[ids[stage]] = follow_approval(client, ids[stage], since, left(), approve)
        else:
            runs[ids[stage]] = client.wait_for_new_run(ids[stage], since, left())
        if runs[ids[stage]]["state"] != "success":
            return runs
        if stage == "preprocess" and _features_reused(client, ids[stage], runs[ids[stage]]):
            log.info("%s: the feature set exists already: no new training", ids[stage])
            return runs
    runs[ids["batch_score"]] = _scoring(client, ids, runs[ids["promote"]], since, left())
    return runs


def run_chains(
    make_client: Callable[[], AirflowClient],
    datasets: dict[str, bool],
    date_from: str,
    date_to: str,
    timeout: float = 900.0,
) -> dict[str, dict[str, dict]]:
    """`run_chain` of several datasets at once, each followed by its own client: their DAGs
    are their own, and one chain's waits (task start-up, the scheduler's loop, a sensor) are
    the other's working time. `datasets`: dataset -> approve its promotion. Returns each
    dataset's runs, keyed by dataset."""
    with ThreadPoolExecutor(max_workers=len(datasets)) as pool:
        futures = {
            dataset: pool.submit(
                run_chain, make_client(), dataset, date_from, date_to, timeout, approve
            )
            for dataset, approve in datasets.items()
        }
        return {dataset: future.result() for dataset, future in futures.items()}


def _features_reused(client: AirflowClient, dag_id: str, run: dict) -> bool:
    """The preprocess run found its feature set made already: its `publish` task was skipped,
    so no training starts (`model.retrain`, ml.retrain_policy)."""
    tis = client.task_instances(dag_id, run["dag_run_id"])
    return any(t["task_id"] == "publish" and t["state"] == "skipped" for t in tis)


def _scoring(
    client: AirflowClient, ids: dict[str, str], promote_run: dict, since: datetime, timeout: float
) -> dict:
    """The scoring run after a promotion run: the one the moved alias started, else (nothing
    moved) one triggered to score the day with the champion that stays."""
    promote = next(
        t
        for t in client.task_instances(ids["promote"], promote_run["dag_run_id"])
        if t["task_id"] == "promote"
    )
    if promote["state"] == "success":  # the alias moved: its asset event starts one run
        return wait_for_asset_run(client, ids["batch_score"], since, timeout)
    log.info("challenger not promoted; scoring with the current champion")
    run_id = client.trigger(ids["batch_score"], {"score_date": None, "threshold": 0.5})
    return client.wait_for_run(ids["batch_score"], run_id, timeout)


def follow_approval(
    client: AirflowClient, dag_id: str, since: datetime, timeout: float, approve: bool
) -> dict:
    """The first run of `dag_id` since `since`, followed to its end; when it waits for a
    person, says where (once), or answers Approve as this client's user (`approve`)."""
    deadline = time.monotonic() + timeout
    runs = []
    while not runs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run of {dag_id} started within {timeout:.0f}s")
        time.sleep(2)
        runs = client.runs_since(dag_id, since)
    run_id, told = runs[0]["dag_run_id"], False
    while (run := client.run(dag_id, run_id))["state"] not in ("success", "failed"):
        for task_id in client.awaiting_input(dag_id, run_id):
            if approve:
                client.respond(dag_id, run_id, task_id, ["Approve"])
                log.info("%s %s: %s approved", dag_id, run_id, task_id)
            elif not told:
                log.info("%s waits for a person: %s", dag_id, airflow_url(dag_id, run_id, task_id))
                told = True
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
        time.sleep(2)
    return run


def summarize(
    dataset: str, date_from: str, date_to: str, runs: dict[str, dict], settings: Settings
) -> DemoSummary:
    """What the runs produced, read back from object storage and the MLflow registry."""
    contract = contracts.load_contract(dataset)
    granularity = partitions.granularity_of(contract.partition)
    in_range = {
        partitions.name(k, granularity)
        for k in partitions.keys_between(date_from, date_to, granularity)
    }

    def rows(zone: str, name: str) -> int:
        return sum(
            m.rows
            for p, m in storage.latest_batches(zone, name, settings).items()
            if p in in_range or p == contracts.SNAPSHOT
        )

    names = [dataset, *joins.reference_datasets(contract)]
    model_name = contract.model_name
    model, challenger = _registry_summary(model_name)
    return DemoSummary(
        ok=bool(runs) and all(r["state"] == "success" for r in runs.values()),
        dates=f"{date_from} .. {date_to}",
        runs={dag_id: r["state"] for dag_id, r in runs.items()},
        ingested={n: rows("raw", n) for n in names},
        validated={n: rows("validated", n) for n in names},
        quarantined={n: rows("quarantine", n) for n in names},
        model=model,
        challenger=challenger,
        predictions=_predictions_summary(dataset, settings),
        urls={
            "Airflow UI": settings.airflow_api_url,
            "MLflow UI": settings.mlflow_tracking_uri,
            "MLflow model": f"{settings.mlflow_tracking_uri}/#/models/{model_name}",
            "S3 endpoint": settings.s3_endpoint_url,
        },
    )


def _registry_summary(
    model_name: str,
) -> tuple[ChampionSummary | None, ChallengerSummary | None]:
    """The champion, and a challenger that did not replace it."""
    model = None
    version = alias_version(model_name, CHAMPION)
    if version is not None:
        mv = tracking.client().get_model_version(model_name, version)
        model = ChampionSummary(
            name=model_name,
            champion_version=version,
            test_roc_auc=mv.tags.get("test_roc_auc"),
            promotion=mv.tags.get("promotion.reason"),
            run_id=mv.run_id,
        )
    challenger = alias_version(model_name, CHALLENGER)
    if challenger is None or challenger == version:
        return model, None
    tags = tracking.client().get_model_version(model_name, challenger).tags
    return model, ChallengerSummary(version=challenger, decision=tags.get("promotion.reason"))


def _predictions_summary(dataset: str, settings: Settings) -> PredictionsSummary | None:
    predictions = storage.list_batches("predictions", dataset, settings=settings)
    if not predictions:
        return None
    latest = max(predictions, key=lambda m: m.created_at)
    return PredictionsSummary(
        ref=latest.ref, rows=latest.rows, model_version=latest.extra.get("model_version")
    )


def run(
    date_from: str = "2013-01-01",
    date_to: str = "2013-01-10",
    timeout: float = 480.0,
    dataset: str = "flights",
) -> DemoSummary:
    """Stack up, run the chain through Airflow, and return the summary."""
    s = get_settings()
    started = time.monotonic()
    urls = lifecycle.up(s)
    client = auth.airflow_client(s)
    try:
        runs = run_chain(client, dataset, date_from, date_to, timeout)
    except TimeoutError as exc:
        log.error("%s", exc)
        runs = {}
    summary = summarize(dataset, date_from, date_to, runs, s)
    if "Dask dashboard" in urls:
        summary.urls["Dask dashboard"] = urls["Dask dashboard"]
    summary.seconds = round(time.monotonic() - started, 1)
    return summary


def format_summary(summary: DemoSummary) -> str:
    seconds = summary.seconds if summary.seconds is not None else "?"
    lines = [
        "",
        "=" * 72,
        f"Pipeline demo: flights of {summary.dates}  ->  {'OK' if summary.ok else 'FAILED'}"
        f"  ({seconds} s)",
        "=" * 72,
        "Airflow runs:",
        *[f"  {dag_id:<24} {state}" for dag_id, state in summary.runs.items()],
        "Rows ingested (raw):        " + _pairs(summary.ingested),
        "Rows validated:             " + _pairs(summary.validated),
        "Rows quarantined:           " + _pairs(summary.quarantined),
    ]
    if (m := summary.model) is not None:
        lines += [
            f"Model:                      {m.name} version {m.champion_version} holds 'champion'",
            f"  test ROC AUC:             {m.test_roc_auc}",
            f"  promotion:                {m.promotion}",
            f"  MLflow run:               {m.run_id}",
        ]
    if (c := summary.challenger) is not None:
        lines.append(f"Challenger:                 version {c.version} not promoted: {c.decision}")
    if (p := summary.predictions) is not None:
        lines.append(
            f"Predictions:                {p.rows} rows by version {p.model_version} at {p.ref}"
        )
    lines += [
        "Where to look:",
        *[f"  {name:<15} {url}" for name, url in summary.urls.items()],
        "  Stop the services with `mlpipe stack down` (or `make stack-down`).",
        "",
    ]
    return "\n".join(lines)


def _pairs(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())
