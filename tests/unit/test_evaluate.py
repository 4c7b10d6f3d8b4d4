"""Evaluation metrics of a model version on a snapshot (no servers)."""

from __future__ import annotations

import numpy as np
import pytest

from ml import evaluate

pytestmark = pytest.mark.unit


def test_metrics_include_calibration():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, 20000) < p).astype(int)  # outcomes drawn at the stated probability
    calibrated = evaluate.metrics(y, p)
    overconfident = evaluate.metrics(y, np.full(len(y), 0.99))
    assert calibrated["ece"] < 0.03 < 0.4 < overconfident["ece"]
    assert overconfident["brier"] > calibrated["brier"]
    assert set(calibrated) >= {"roc_auc", "log_loss", "accuracy", "brier", "ece"}
