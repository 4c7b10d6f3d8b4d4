"""The training loss per target kind, and the prior shift its weighting puts into the outputs.

- binary: BCE on the logit, positives weighted by negatives/positives (`pos_weight`);
- multiclass: cross-entropy, classes weighted n / (K * count) where they are imbalanced;
- regression: mean squared error on the standardized (optionally log1p) target.

Weighting a class by w shifts its learned logit by log(w): the shift is returned so the fit can
take it out of the output bias, and the probabilities stay calibrated (before calibration
proper, `ml.training.calibration`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ml.features.target import BINARY, MULTICLASS
from ml.training.heads import class_weights

IMBALANCE = 1.5  # classes are weighted when the largest is this many times the smallest


class ClassCrossEntropy(nn.Module):
    """Cross-entropy of class logits against class indices stored as floats."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target.long(), weight=self.weight)


class StandardizedMSE(nn.Module):
    """Mean squared error of the output against the standardized (transformed) target."""

    def __init__(self, mean: float, std: float, log1p: bool) -> None:
        super().__init__()
        self.mean, self.std, self.log1p = mean, std, log1p

    def standardize(self, target: torch.Tensor) -> torch.Tensor:
        value = torch.log1p(target) if self.log1p else target
        return (value - self.mean) / self.std

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, self.standardize(target))


def loss_for(head: dict[str, Any], y_train, weighted: bool, device: str):
    """(loss module, prior shift of the output bias: a float or a list per class)."""
    import numpy as np

    y = np.asarray(y_train, dtype="float64")
    if head["kind"] == BINARY:
        rate = float(y.mean()) if len(y) else 0.0
        weight = (1 - rate) / max(rate, 1e-6) if weighted else 1.0
        loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([weight], device=device))
        return loss, math.log(weight)
    if head["kind"] == MULTICLASS:
        weights = class_weights(y, head)
        if not weighted or max(weights) / max(min(weights), 1e-12) < IMBALANCE:
            weights = [1.0] * len(weights)
        loss = ClassCrossEntropy(torch.tensor(weights, dtype=torch.float32, device=device))
        return loss, [math.log(w) for w in weights]
    loss = StandardizedMSE(head["mean"], head["std"], head.get("transform") == "log1p")
    return loss, 0.0
