"""Model quality metrics: PR AUC and calibration error beside ROC AUC."""

from __future__ import annotations

import numpy as np
import pytest

from ml.metrics import binary_metrics

pytestmark = pytest.mark.unit


def test_metrics_include_pr_auc_and_calibration_error():
    y = np.array([0, 0, 1, 1])
    m = binary_metrics(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["roc_auc"] == pytest.approx(0.75)
    assert set(m) >= {"roc_auc", "pr_auc", "log_loss", "ece"}
    assert binary_metrics(y, y.astype(float))["ece"] == pytest.approx(1e-7, abs=1e-6)
