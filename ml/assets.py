"""The data assets that chain the DAGs, named once: a zone of a dataset, an alias of a model.

Plain strings (no Airflow here): `dags/_mlpipe.py` turns them into Airflow `Asset`s, and the CLI
uses the same URIs when it raises an asset event through the REST API (a rollback).
"""

from __future__ import annotations

from typing import NamedTuple

# The aliases of a registered model (MLflow aliases, not stages).
CHAMPION = "champion"  # what scoring uses
CHALLENGER = "challenger"  # set by training, cleared by a promotion
PREVIOUS = "previous"  # the champion before the last move (what a rollback restores)


class AssetName(NamedTuple):
    uri: str
    name: str


def zone(zone_name: str, dataset: str) -> AssetName:
    """The batches of one dataset in one storage zone, e.g. `s3://validated/flights`."""
    return AssetName(f"s3://{zone_name}/{dataset}", f"{zone_name}.{dataset}")


def model_alias(model_name: str, alias: str) -> AssetName:
    """An alias of a registered model, e.g. `mlflow://models/flights_delay/champion`."""
    return AssetName(f"mlflow://models/{model_name}/{alias}", f"{alias}.{model_name}")


def champion_event(model_name: str, record: dict) -> dict:
    """The extra of a `champion` asset event, from the audit record of the move that raised
    it (a promotion's or a rollback's): what scoring and the console read."""
    return {
        "model_name": model_name,
        "version": record["version"],
        "action": record["action"],
        "audit_record": record["audit_record"],
    }
