"""Batch scoring: the champion model over a day of validated rows, on Dask, into `predictions`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ml import contracts, features, registry, storage
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Loaded models, per worker process: a model is loaded once per worker, not once per partition.
_MODELS: dict[str, Any] = {}


def _load_model(model_uri: str, tracking_uri: str):
    model = _MODELS.get(model_uri)
    if model is None:
        import mlflow
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracking_uri)
        model = _MODELS[model_uri] = mlflow.pyfunc.load_model(model_uri)
    return model


def predict_partition(
    df: pd.DataFrame,
    model_uri: str,
    tracking_uri: str,
    version: str,
    threshold: float,
    keys: list[str],
) -> pd.DataFrame:
    """Score one partition of joined raw rows; keep the keys, add probability, label, version."""
    out = df[keys].copy()
    if len(df):
        proba = _load_model(model_uri, tracking_uri).predict(df)["probability"].to_numpy()
    else:
        proba = []
    out["probability"] = proba
    out["probability"] = out["probability"].astype("float64")
    out["label"] = out["probability"] >= threshold
    out["model_version"] = version
    return out


def score(dataset: str, day: str | None = None, threshold: float = 0.5) -> dict:
    """Score one day (`YYYY-MM-DD`, default the newest validated day) with the champion."""
    import pandas as pd

    from ml.cluster import dask_client

    s = get_settings()
    contract = contracts.load_contract(dataset)
    model_name = contract.model_name
    version = registry.alias_version(model_name, registry.CHAMPION)  # resolved once per run
    if version is None:
        raise LookupError(
            f"model {model_name!r} has no {registry.CHAMPION!r} alias: nothing to score with"
        )
    batches = storage.latest_batches("validated", dataset)
    if not batches:
        raise storage.BatchNotFoundError(f"no validated {dataset} batch to score")
    partition = f"date={day}" if day else max(batches)
    if partition not in batches:
        raise storage.BatchNotFoundError(f"no validated {dataset} batch for {partition}")
    batch = batches[partition]
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
    model_uri = f"models:/{model_name}/{version}"
    keys = features.row_keys(contract)
    batch_id = f"model={version}"
    options = s.s3_storage_options()
    fs = storage.filesystem(s)
    prefix = f"{s.bucket('predictions')}/{dataset}/{partition}/{batch_id}"
    if fs.exists(prefix):
        fs.rm(
            prefix, recursive=True
        )  # a re-run of the same day and version replaces, never duplicates
    with dask_client(s):
        rows = storage.read_dask([batch], s)
        references = {name: storage.read_batch(m, s) for name, m in reference_manifests.items()}
        joined = features.join_references(rows, references, contract)
        meta = joined._meta[keys].copy()
        meta["probability"] = pd.Series(dtype="float64")
        meta["label"] = pd.Series(dtype="bool")
        meta["model_version"] = pd.Series(dtype="string")
        predictions = joined.map_partitions(
            predict_partition, model_uri, s.mlflow_tracking_uri, version, threshold, keys, meta=meta
        )
        predictions.to_parquet(
            f"s3://{prefix}/", storage_options=options, compression="zstd", write_index=False
        )
    manifest = storage.commit_parts(
        "predictions",
        dataset,
        partition,
        batch_id,
        source=model_uri,
        contract_hash=contract.hash,
        upstream=upstream,
        extra={"model_name": model_name, "model_version": version, "threshold": threshold},
    )
    log.info("scored %s rows of %s %s with %s", manifest.rows, dataset, partition, model_uri)
    return {
        "ref": manifest.ref,
        "rows": manifest.rows,
        "model_version": version,
        "partition": partition,
    }
