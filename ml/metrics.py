"""Model quality metrics, computed one way for training, baselines, compression and promotion."""

from __future__ import annotations

CALIBRATION_BINS = 10


def binary_metrics(y_true, proba) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, expected calibration error, accuracy, positive rate."""
    import numpy as np
    from sklearn.metrics import accuracy_score, average_precision_score, log_loss, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    proba = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1 - 1e-7)
    both = len(set(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y_true, proba)) if both else float("nan"),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "ece": expected_calibration_error(y_true, proba),
        "accuracy": float(accuracy_score(y_true, proba >= 0.5)),
        "positive_rate": float(y_true.mean()) if len(y_true) else 0.0,
    }


def expected_calibration_error(y_true, proba, bins: int = CALIBRATION_BINS) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, row-weighted."""
    import numpy as np

    y_true, proba = np.asarray(y_true, dtype="float64"), np.asarray(proba, dtype="float64")
    if not len(y_true):
        return float("nan")
    which = np.minimum((proba * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y_true[mask].mean() - proba[mask].mean())
    return float(total / len(y_true))


def brier_score(y_true, proba) -> float:
    """Mean squared difference between the predicted probability and the outcome."""
    import numpy as np

    y, p = np.asarray(y_true, dtype="float64"), np.asarray(proba, dtype="float64")
    return float(np.mean((p - y) ** 2)) if len(y) else 0.0
