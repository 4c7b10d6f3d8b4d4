"""The figures a person looks at after training, as PNG files for MLflow artifacts.

Loss curves, ROC and precision-recall curves, a reliability (calibration) diagram and the
confusion matrix at 0.5. matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path


def training_figures(history: list[dict], y_true, proba, folder: Path) -> list[Path]:
    """Write the figures of one training run into `folder`; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype="float64")
    paths = []

    def save(fig, name: str) -> None:
        path = folder / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train (weighted)")
    ax.plot(epochs, [row["val_log_loss"] for row in history], marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="log loss", title="Loss curves")
    ax.legend()
    save(fig, "loss_curves")

    both = len(set(y_true)) == 2
    if both:
        fpr, tpr, _ = roc_curve(y_true, proba)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
        save(fig, "roc_curve")

        precision, recall, _ = precision_recall_curve(y_true, proba)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(recall, precision)
        ax.axhline(y_true.mean(), linestyle="--", color="grey")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
        save(fig, "pr_curve")

    bins = np.minimum((proba * 10).astype(int), 9)
    pred = [proba[bins == b].mean() for b in range(10) if (bins == b).any()]
    seen = [y_true[bins == b].mean() for b in range(10) if (bins == b).any()]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.plot(pred, seen, marker="o")
    ax.set(xlabel="mean predicted", ylabel="observed rate", title="Calibration (test)")
    save(fig, "calibration")

    matrix = confusion_matrix(y_true, proba >= 0.5, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, f"{n:,}", ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual")
    ax.set_title("Confusion matrix at 0.5 (test)")
    save(fig, "confusion_matrix")
    return paths
