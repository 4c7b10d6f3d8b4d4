"""Model quality metrics, computed one way for training, baselines, compression and promotion.

Per target kind (`kind_metrics`): binary (ROC AUC, PR AUC, log loss, ECE, ...), multiclass
(macro-F1, log loss, one-vs-rest ROC AUC, accuracy, top-label ECE), regression (RMSE, MAE, R²).
"""

from __future__ import annotations

CALIBRATION_BINS = 10
# The metric each kind is judged on first (training logs, the promotion rule's default).
PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}


def kind_metrics(kind: str, y_true, predicted, classes=None) -> dict[str, float]:
    """The metrics of a target kind: `predicted` is the positive-class probability (binary),
    the class probabilities (n, K) (multiclass; `classes`: the predicted class indices when
    the decision is not the most probable class) or the predicted values (regression)."""
    if kind == "multiclass":
        return multiclass_metrics(y_true, predicted, classes)
    if kind == "regression":
        return regression_metrics(y_true, predicted)
    return binary_metrics(y_true, predicted)


def multiclass_metrics(y_true, proba, predicted=None) -> dict[str, float]:
    """Macro-F1 and accuracy of the predicted classes (`predicted`, default the most probable),
    log loss, one-vs-rest ROC AUC (macro) and top-label ECE of the probabilities."""
    import numpy as np
    from sklearn.metrics import f1_score, log_loss, roc_auc_score

    y = np.asarray(y_true).astype(int)
    proba = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    k = proba.shape[1]
    labels = list(range(k))
    top_class = proba.argmax(axis=1)
    predicted = top_class if predicted is None else np.asarray(predicted).astype(int)
    present = sorted(set(y.tolist()))
    if len(present) > 1:
        cols = present
        sub = proba[:, cols] / proba[:, cols].sum(axis=1, keepdims=True)
        ovr = roc_auc_score(y, sub if len(cols) > 2 else sub[:, 1], multi_class="ovr", labels=cols)
    else:
        ovr = float("nan")
    top = proba.max(axis=1)
    return {
        "macro_f1": float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y, proba, labels=labels)) if len(y) else float("nan"),
        "ovr_auc": float(ovr),
        "accuracy": float((predicted == y).mean()) if len(y) else float("nan"),
        "ece": expected_calibration_error((top_class == y).astype("float64"), top),
    }


def regression_metrics(y_true, predicted) -> dict[str, float]:
    """Root mean squared error, mean absolute error and R² (1 - SSE / SST)."""
    import numpy as np

    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(predicted, dtype="float64")
    if not len(y):
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan")}
    err = p - y
    sst = float(((y - y.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt((err**2).mean())),
        "mae": float(np.abs(err).mean()),
        "r2": 1.0 - float((err**2).sum()) / sst if sst > 0 else float("nan"),
    }


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
