"""The MLflow model registry: champion/challenger promotion on a frozen evaluation snapshot."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ml import features, storage
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"


def client() -> MlflowClient:
    import mlflow

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    return mlflow.MlflowClient()


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def evaluate(model_name: str, version: str, rows: pd.DataFrame, metric: str) -> float:
    """A model version's metric on labelled joined raw rows (the pyfunc does its own transform)."""
    import mlflow.pyfunc

    from ml.train import binary_metrics

    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    proba = model.predict(rows.drop(columns=[features.TARGET]))["probability"]
    return binary_metrics(rows[features.TARGET], proba)[metric]


def promote(
    model_name: str,
    version: str,
    eval_snapshot: str,
    metric: str = "roc_auc",
    min_improvement: float = 0.0,
) -> dict:
    """Move `champion` to `version` when it beats the champion on the same eval snapshot.

    Both models are scored on the same rows; the decision, its numbers and its reason are
    tagged on the version and appended to the audit log in the `reports` zone.
    """
    import pandas as pd

    rows = pd.read_parquet(eval_snapshot, storage_options=get_settings().s3_storage_options())
    challenger_score = evaluate(model_name, version, rows, metric)
    champion = alias_version(model_name, CHAMPION)
    champion_score = None
    if champion is None:
        promoted, reason = True, "no champion yet"
    elif champion == version:
        promoted, reason = False, f"version {version} is already the champion"
    else:
        try:
            champion_score = evaluate(model_name, champion, rows, metric)
        except Exception as exc:  # a champion whose artifacts are gone cannot defend its title
            log.warning("champion %s of %s could not be evaluated: %s", champion, model_name, exc)
            promoted, reason = True, f"champion version {champion} could not be evaluated: {exc}"
        else:
            promoted = challenger_score > champion_score + min_improvement
            verb = "beats" if promoted else "does not beat"
            reason = (
                f"{metric} {challenger_score:.4f} {verb} champion {champion} "
                f"({champion_score:.4f}) by the required {min_improvement}"
            )
    mlflow_client = client()
    if promoted:
        if champion is not None and champion != version:
            mlflow_client.set_registered_model_alias(model_name, PREVIOUS, champion)
        mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
        if alias_version(model_name, CHALLENGER) == version:  # no longer a challenger
            mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)
    decision = {
        "model_name": model_name,
        "version": version,
        "previous_champion": champion,
        "promoted": promoted,
        "reason": reason,
        "metric": metric,
        "challenger_score": challenger_score,
        "champion_score": champion_score,
        "min_improvement": min_improvement,
        "eval_snapshot": eval_snapshot,
        "eval_rows": len(rows),
        "decided_at": datetime.now(UTC).isoformat(),
    }
    for key in ("promoted", "reason", "challenger_score", "champion_score"):
        mlflow_client.set_model_version_tag(
            model_name, version, f"promotion.{key}", str(decision[key])
        )
    decision["audit_record"] = storage.write_json(
        "reports", f"promotions/{model_name}/{decision['decided_at']}-v{version}.json", decision
    )
    log.info("promotion of %s version %s: %s (%s)", model_name, version, promoted, reason)
    return decision
