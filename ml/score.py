"""Batch scoring: one model version over days of validated rows, on Dask, into `predictions`.

The `champion` alias is resolved to a version once per run (`resolve_champion`) and that
version scores every partition of the run: it is written in every output row and manifest.
The model is loaded once per Dask worker process, not once per partition. Predictions are
checked against their own contract (`data_contracts/outputs/predictions.yaml`) before their
manifest commits them, and each scored day gets a drift report against the training data.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ml import contracts, drift, registry, storage
from ml.features import joins, sets
from ml.features.derived import row_keys
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Not in data_contracts/ itself: that folder's files are the datasets that are ingested.
PREDICTIONS_CONTRACT = contracts.CONTRACTS_DIR / "outputs" / "predictions.yaml"

# Loaded models, per worker process: a model is loaded once per worker, not once per partition.
_MODELS: dict[str, Any] = {}
LOADS: dict[str, int] = {}  # model URI -> times loaded in this process (tests and benches read it)


def _load_model(model_uri: str, tracking_uri: str):
    model = _MODELS.get(model_uri)
    if model is None:
        import mlflow
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracking_uri)
        model = _MODELS[model_uri] = mlflow.pyfunc.load_model(model_uri)
        LOADS[model_uri] = LOADS.get(model_uri, 0) + 1
    return model


def worker_loads() -> dict[str, int]:
    """How often this process loaded each model (run on Dask workers with `client.run`)."""
    return dict(LOADS)


def predict_partition(
    df: pd.DataFrame,
    model_uri: str,
    tracking_uri: str,
    version: str,
    threshold: float,
    keys: list[str],
) -> pd.DataFrame:
    """Score one partition of joined raw rows; keep the keys, add probability, label, version."""
    import pandas as pd

    out = df[keys].copy()
    if len(df):
        proba = _load_model(model_uri, tracking_uri).predict(df)["probability"].to_numpy()
    else:
        proba = []
    out["probability"] = pd.Series(proba, index=df.index, dtype="float64")
    out["label"] = out["probability"] >= threshold
    out["model_version"] = pd.Series(version, index=df.index, dtype="string")
    return out


def resolve_champion(dataset: str, model_name: str | None = None) -> dict[str, str]:
    """The champion's version, resolved once: every partition of a run is scored with it."""
    model_name = model_name or contracts.load_contract(dataset).model_name
    version = registry.alias_version(model_name, registry.CHAMPION)
    if version is None:
        raise LookupError(
            f"model {model_name!r} has no {registry.CHAMPION!r} alias: nothing to score with"
        )
    return {"model_name": model_name, "version": version}


def scored_by(dataset: str, model_name: str, version: str) -> set[str]:
    """Validated batch refs that committed predictions of this model version were made from."""
    done: set[str] = set()
    for m in storage.list_batches("predictions", dataset):
        extra = m.extra
        if extra.get("model_name") == model_name and str(extra.get("model_version")) == version:
            done.update(m.upstream)
    return done


def pending_partitions(
    dataset: str, version: str, limit: int | None = None, model_name: str | None = None
) -> list[str]:
    """Partitions whose newest validated batch this model version has not scored yet (the
    newest `limit` of them)."""
    model_name = model_name or contracts.load_contract(dataset).model_name
    done = scored_by(dataset, model_name, str(version))
    pending = sorted(
        p for p, m in storage.latest_batches("validated", dataset).items() if m.ref not in done
    )
    return pending[-limit:] if limit else pending


def newest_partition(dataset: str) -> str:
    batches = storage.latest_batches("validated", dataset)
    if not batches:
        raise storage.BatchNotFoundError(f"no validated {dataset} batch to score")
    return max(batches)


def score(
    dataset: str,
    day: str | None = None,
    threshold: float = 0.5,
    *,
    version: str | None = None,
    model_name: str | None = None,
    drift_threshold: float = drift.DEFAULT_THRESHOLD,
) -> dict:
    """Score one day (`YYYY-MM-DD`, default the newest validated day) with one version."""
    partition = f"date={day}" if day else newest_partition(dataset)
    return score_partitions(
        dataset,
        [partition],
        threshold,
        version=version,
        model_name=model_name,
        drift_threshold=drift_threshold,
    )[0]


def score_partitions(
    dataset: str,
    partitions: list[str],
    threshold: float = 0.5,
    *,
    version: str | None = None,
    model_name: str | None = None,
    drift_threshold: float = drift.DEFAULT_THRESHOLD,
) -> list[dict]:
    """Score partitions (`date=YYYY-MM-DD`) with one version: the given one, or the champion
    resolved once here. One Dask session; each partition is committed by its own manifest."""
    from ml.cluster import dask_client

    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a probability in 0..1, got {threshold}")
    contract = contracts.load_contract(dataset)
    model_name = model_name or contract.model_name
    if version is None:
        version = resolve_champion(dataset, model_name)["version"]
    version = str(version)
    profile = drift.reference_profile(dataset, model_name, version)
    transform = sets.load_transform(sets.read_feature_manifest(profile["feature_set"]))
    results = []
    with dask_client():
        for partition in partitions:
            results.append(
                _score_one(
                    contract,
                    partition,
                    model_name,
                    version,
                    threshold,
                    transform,
                    profile,
                    drift_threshold,
                )
            )
    return results


def _score_one(
    contract, partition, model_name, version, threshold, transform, profile, drift_threshold
) -> dict:
    import dask
    import dask.dataframe as dd
    import pandas as pd

    from ml.validation.execute import validate_dask
    from ml.validation.outcome import ContractViolation

    s = get_settings()
    dataset = contract.dataset
    batch = storage.latest_batches("validated", dataset).get(partition)
    if batch is None:
        raise storage.BatchNotFoundError(f"no validated {dataset} batch for {partition}")
    upstream = [batch.ref]
    reference_manifests = {}
    for join in contract.features.get("joins", []):
        ref = storage.latest_batches("validated", join["dataset"]).get(partition)
        if ref is None:
            raise storage.BatchNotFoundError(
                f"no validated {join['dataset']} batch for {partition} to join"
            )
        reference_manifests[join["dataset"]] = ref
        upstream.append(ref.ref)
    model_uri = registry.champion_uri(model_name, version)
    keys = row_keys(contract)
    batch_id = f"model={version}"
    options = s.s3_storage_options()
    fs = storage.filesystem(s)
    prefix = f"{s.bucket('predictions')}/{dataset}/{partition}/{batch_id}"
    if fs.exists(prefix):
        # A re-run of the same day and version replaces the batch, never duplicates it: the
        # manifest goes first, so readers never see a half-replaced batch as committed.
        if fs.exists(f"{prefix}/{storage.MANIFEST}"):
            fs.rm(f"{prefix}/{storage.MANIFEST}")
        fs.rm(prefix, recursive=True)
    rows = storage.read_dask([batch], s)
    references = {name: storage.read_batch(m, s) for name, m in reference_manifests.items()}
    joined = joins.join_references(rows, references, contract)
    meta = joined._meta[keys].copy()
    meta["probability"] = pd.Series(dtype="float64")
    meta["label"] = pd.Series(dtype="bool")
    meta["model_version"] = pd.Series(dtype="string")
    predictions = joined.map_partitions(
        predict_partition, model_uri, s.mlflow_tracking_uri, version, threshold, keys, meta=meta
    )
    write = predictions.to_parquet(
        f"s3://{prefix}/",
        storage_options=options,
        compression="zstd",
        write_index=False,
        compute=False,
    )
    counts = [dask.delayed(drift.batch_counts)(p, transform, profile) for p in joined.to_delayed()]
    _, counts = dask.compute(write, counts)  # one pass over the input: predictions and drift

    written = dd.read_parquet(f"s3://{prefix}/", storage_options=options)
    check = validate_dask(written, str(PREDICTIONS_CONTRACT), partition=partition)
    if not check.success:
        key = f"predictions/{dataset}/{partition}/{batch_id}/_report.json"
        url = storage.write_json("reports", key, check.to_dict())
        raise ContractViolation(
            f"predictions of {dataset} {partition} by {model_name} v{version} break the "
            f"predictions contract: {check.failure_summary()}; report {url}; not committed",
            ref=f"s3://{prefix}",
            report=check,
            report_url=url,
        )
    drift_doc = drift.report(
        profile,
        drift.add_counts(counts),
        partition=partition,
        predictions_ref=f"s3://{prefix}",
        threshold=drift_threshold,
    )
    manifest = storage.commit_parts(
        "predictions",
        dataset,
        partition,
        batch_id,
        source=model_uri,
        contract_hash=contract.hash,
        upstream=upstream,
        extra={
            "model_name": model_name,
            "model_version": version,
            "threshold": threshold,
            "feature_version": profile["feature_version"],
            "drift_report": drift_doc["report"],
            "drifted": drift_doc["drifted"],
            "predictions_contract_hash": check.contract_hash,
        },
    )
    log.info("scored %s rows of %s %s with %s", manifest.rows, dataset, partition, model_uri)
    return {
        "ref": manifest.ref,
        "rows": manifest.rows,
        "model_name": model_name,
        "model_version": version,
        "partition": partition,
        "drift_report": drift_doc["report"],
        "drifted": drift_doc["drifted"],
        "max_psi": drift_doc["max_psi"],
    }


def plan_run(
    dataset: str,
    score_date: str | None = None,
    *,
    alias_moved: bool = False,
    max_days: int | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """A scoring run's plan: the champion resolved once, and the partitions to score.

    A given day is scored as asked; an alias move scores the newest validated day; the daily
    run scores the days whose newest validated batch the champion has not scored yet.
    """
    model_name = model_name or contracts.load_contract(dataset).model_name
    try:
        champion = resolve_champion(dataset, model_name)  # the one alias read of the run
    except LookupError:
        if alias_moved or score_date:
            raise
        log.info("no %s champion yet: the daily run has nothing to score", model_name)
        return {"model_name": model_name, "version": None, "partitions": []}
    if score_date:
        partitions = [f"date={score_date}"]
    elif alias_moved:
        partitions = [newest_partition(dataset)]
    else:
        partitions = pending_partitions(dataset, champion["version"], max_days, model_name)
    log.info(
        "scoring plan for %s: %s v%s over %s",
        dataset,
        champion["model_name"],
        champion["version"],
        partitions or "nothing new",
    )
    return {**champion, "partitions": partitions}


def run_scoring(
    dataset: str,
    plan: dict[str, Any],
    threshold: float = 0.5,
    drift_threshold: float = drift.DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """Score a plan's partitions with the plan's version (never the alias again)."""
    results = (
        score_partitions(
            dataset,
            plan["partitions"],
            threshold,
            version=plan["version"],
            model_name=plan["model_name"],
            drift_threshold=drift_threshold,
        )
        if plan["partitions"]
        else []
    )
    return {
        "model_name": plan["model_name"],
        "model_version": plan["version"],
        "refs": [r["ref"] for r in results],
        "rows": sum(r["rows"] for r in results),
        "drift_reports": [r["drift_report"] for r in results],
        "drifted": sorted({c for r in results for c in r["drifted"]}),
    }
