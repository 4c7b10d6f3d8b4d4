"""The figures a person looks at after training, as PNG files for MLflow artifacts.

Loss curves, ROC and precision-recall curves, a reliability (calibration) diagram and the
confusion matrix at 0.5. matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # before pyplot: no display needed

import matplotlib.pyplot as plt


def training_figures(history: list[dict], y_true, proba, folder: Path) -> list[Path]:
    """Write the figures of one training run into `folder`; return their paths."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype="float64")
    paths = [_save(_loss_curves(history), folder, "loss_curves")]
    if len(set(y_true)) == 2:
        paths.append(_save(_roc_curve(y_true, proba), folder, "roc_curve"))
        paths.append(_save(_pr_curve(y_true, proba), folder, "pr_curve"))
    paths.append(_save(_calibration(y_true, proba), folder, "calibration"))
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
    ax.plot(epochs, [row["val_log_loss"] for row in history], marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="log loss", title="Loss curves")
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


def _calibration(y_true, proba):
    bins = np.minimum((proba * 10).astype(int), 9)
    pred = [proba[bins == b].mean() for b in range(10) if (bins == b).any()]
    seen = [y_true[bins == b].mean() for b in range(10) if (bins == b).any()]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.plot(pred, seen, marker="o")
    ax.set(xlabel="mean predicted", ylabel="observed rate", title="Calibration (test)")
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
