"""The baseline: gradient-boosted trees on the same features."""

from __future__ import annotations

import pytest

from ml.metrics import binary_metrics
from ml.training.baseline import BaselineParams, baseline_proba, fit_baseline

pytestmark = pytest.mark.unit


def test_baseline_trees_on_the_same_features(data):
    frame, val, transform = data
    model = fit_baseline(frame, val, transform, BaselineParams(max_iter=50))
    metrics = binary_metrics(val["target"], baseline_proba(model, val, transform))
    assert metrics["roc_auc"] > 0.7
    assert 0 <= metrics["ece"] < 0.1
