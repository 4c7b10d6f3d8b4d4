"""Evaluation: model versions scored on a frozen snapshot, with the metrics the rule compares.

The snapshot (the joined raw rows of a feature set's test split) is pinned by its content hash,
so a decision names exactly the rows both models were scored on. The rule itself is
`ml.promotion_rule`; `ml.registry` applies it to what is measured here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ml import storage, tracking
from ml.features.derived import TARGET
from ml.metrics import binary_metrics, brier_score, multiclass_metrics, regression_metrics
from ml.model_versions import version_uri
from ml.promotion_rule import EvaluationError
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def metrics(y_true, proba) -> dict[str, float]:
    """ROC AUC, accuracy, log loss, Brier score and expected calibration error."""
    import numpy as np

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1 - 1e-7)
    return {**binary_metrics(y, p), "brier": brier_score(y, p)}


def load_snapshot(uri: str) -> tuple[pd.DataFrame, str]:
    """The labelled rows of a frozen evaluation snapshot and their content hash."""
    import pandas as pd

    try:
        rows = pd.read_parquet(uri, storage_options=get_settings().s3_storage_options())
    except FileNotFoundError:
        raise EvaluationError(f"evaluation snapshot {uri}: not found") from None
    if TARGET not in rows.columns or rows.empty:
        raise EvaluationError(
            f"evaluation snapshot {uri}: needs labelled rows (a {TARGET!r} column), "
            f"got {len(rows)} rows with columns {list(rows.columns)[:8]}..."
        )
    return rows, storage.content_hash(rows)


def evaluate_version(model_name: str, version: str, rows: pd.DataFrame) -> dict[str, float]:
    """A registered model version's metrics on labelled joined raw rows (its own transform),
    those of its target's kind, told by its outputs (`ml.training.heads`)."""
    model = tracking.load_model(version_uri(model_name, version))
    return output_metrics(rows[TARGET], model.predict(rows.drop(columns=[TARGET])))


def output_metrics(y_true, out: pd.DataFrame) -> dict[str, float]:
    """The metrics of a model's output frame: `probability` (binary), `probability_<class>`
    per class (multiclass, in the classes' order) or `prediction` (regression)."""
    if "probability" in out.columns:
        return metrics(y_true, out["probability"])
    if "prediction" in out.columns:
        return regression_metrics(y_true, out["prediction"])
    classes = [c for c in out.columns if c.startswith("probability_")]
    if not classes:
        raise EvaluationError(
            f"model outputs {list(out.columns)[:8]}: none of probability, prediction or "
            "probability_<class>; cannot measure them"
        )
    names = [c.removeprefix("probability_") for c in classes]
    predicted = None
    if "predicted_class" in out.columns:
        predicted = [names.index(c) for c in out["predicted_class"].astype(str)]
    return multiclass_metrics(y_true, out[classes].to_numpy(dtype="float64"), predicted)
