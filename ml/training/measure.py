"""The metrics of a network's raw outputs through its head: the probabilities or values the
head gives, and for multiclass the classes its decision picks (`ml.training.heads`)."""

from __future__ import annotations

from typing import Any

from ml.features.target import MULTICLASS
from ml.metrics import kind_metrics
from ml.training.heads import activate, predicted_index


def head_metrics(y_true, raw, head: dict[str, Any]) -> dict[str, float]:
    """`ml.metrics.kind_metrics` of raw outputs as the model would predict them."""
    values = activate(raw, head)
    classes = predicted_index(values, head) if head["kind"] == MULTICLASS else None
    return kind_metrics(head["kind"], y_true, values, classes)
