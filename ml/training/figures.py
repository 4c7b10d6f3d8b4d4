"""The figures a person looks at after training, as PNG files for MLflow artifacts.

Per target kind: loss curves always; binary: ROC and precision-recall curves, the reliability
(calibration) diagram before and after calibration and the confusion matrix at 0.5; multiclass:
the class confusion matrix and the top-label reliability before and after calibration;
regression: residuals and predicted against actual. matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # before pyplot: no display needed

import matplotlib.pyplot as plt


def training_figures(
    history: list[dict], y_true, predicted, folder: Path, head=None, before=None
) -> list[Path]:
    """Write the figures of one training run into `folder`; return their paths.

    `predicted`: what the head gives (binary probability, class probabilities, values);
    `before`: the same before calibration (drawn beside it in the calibration figure).
    """
    kind = (head or {}).get("kind", "binary")
    paths = [_save(_loss_curves(history), folder, "loss_curves")]
    if kind == "regression":
        y, p = np.asarray(y_true, dtype="float64"), np.asarray(predicted, dtype="float64")
        paths.append(_save(_residuals(y, p), folder, "residuals"))
        paths.append(_save(_predicted_vs_actual(y, p), folder, "predicted_vs_actual"))
        return paths
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(predicted, dtype="float64")
    if kind == "multiclass":
        classes = list(head["classes"])
        hit = (proba.argmax(axis=1) == y_true).astype(int)
        curves = {"calibrated": (hit, proba.max(axis=1))}
        if before is not None:
            b = np.asarray(before, dtype="float64")
            curves["before"] = ((b.argmax(axis=1) == y_true).astype(int), b.max(axis=1))
        paths.append(_save(_calibration(curves, "top-label "), folder, "calibration"))
        matrix = _class_confusion(y_true, proba.argmax(axis=1), classes)
        paths.append(_save(matrix, folder, "confusion_matrix"))
        return paths
    if len(set(y_true)) == 2:
        paths.append(_save(_roc_curve(y_true, proba), folder, "roc_curve"))
        paths.append(_save(_pr_curve(y_true, proba), folder, "pr_curve"))
    curves = {"calibrated": (y_true, proba)}
    if before is not None:
        curves["before"] = (y_true, np.asarray(before, dtype="float64"))
    paths.append(_save(_calibration(curves), folder, "calibration"))
    paths.append(_save(_confusion_matrix(y_true, proba), folder, "confusion_matrix"))
    return paths


def _save(fig, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _loss_curves(history: list[dict]):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train (weighted)")
    val = [row.get("val_loss", row.get("val_log_loss")) for row in history]
    ax.plot(epochs, val, marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss curves")
    ax.legend()
    return fig


def _roc_curve(y_true, proba):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_true, proba)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    return fig


def _pr_curve(y_true, proba):
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y_true, proba)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(recall, precision)
    ax.axhline(y_true.mean(), linestyle="--", color="grey")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    return fig


def _calibration(curves: dict, what: str = ""):
    """Reliability diagram: one line per `label -> (outcome 0/1, probability)`."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    for label, (y_true, proba) in curves.items():
        bins = np.minimum((proba * 10).astype(int), 9)
        pred = [proba[bins == b].mean() for b in range(10) if (bins == b).any()]
        seen = [y_true[bins == b].mean() for b in range(10) if (bins == b).any()]
        ax.plot(pred, seen, marker="o", label=label)
    ax.set(xlabel=f"mean predicted {what}", ylabel="observed rate", title="Calibration (test)")
    ax.legend()
    return fig


def _class_confusion(y_true, predicted, classes: list[str]):
    from sklearn.metrics import confusion_matrix

    k = len(classes)
    matrix = confusion_matrix(y_true, predicted, labels=list(range(k)))
    fig, ax = plt.subplots(figsize=(1.2 * k + 2, 1.2 * k + 1.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, f"{n:,}", ha="center", va="center")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="actual")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    ax.set_title("Confusion matrix (test)")
    return fig


def _residuals(y_true, predicted):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(predicted - y_true, bins=60)
    ax.set(xlabel="predicted - actual", ylabel="rows", title="Residuals (test)")
    return fig


def _predicted_vs_actual(y_true, predicted):
    fig, ax = plt.subplots(figsize=(4, 4))
    step = max(len(y_true) // 5000, 1)  # a sample: a scatter of every row says no more
    ax.scatter(y_true[::step], predicted[::step], s=3, alpha=0.4)
    low, high = float(np.min(y_true, initial=0)), float(np.max(y_true, initial=1))
    ax.plot([low, high], [low, high], linestyle="--", color="grey")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test)")
    return fig


def _confusion_matrix(y_true, proba):
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, proba >= 0.5, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, f"{n:,}", ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual")
    ax.set_title("Confusion matrix at 0.5 (test)")
    return fig
