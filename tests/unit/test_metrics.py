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


def test_metrics_of_every_kind():
    import numpy as np

    from ml.metrics import PRIMARY_METRIC, kind_metrics

    y = np.array([0, 1, 2, 2, 1, 0])
    perfect = np.eye(3)[y] * 0.9 + 0.1 / 3
    m = kind_metrics("multiclass", y, perfect)
    assert m["macro_f1"] == 1.0 and m["ovr_auc"] == 1.0 and m["accuracy"] == 1.0
    assert set(m) == {"macro_f1", "log_loss", "ovr_auc", "accuracy", "ece"}
    wrong = kind_metrics("multiclass", y, np.eye(3)[(y + 1) % 3])
    assert wrong["macro_f1"] == 0.0 and wrong["log_loss"] > m["log_loss"]
    r = kind_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert r["rmse"] == pytest.approx((4 / 3) ** 0.5) and r["mae"] == pytest.approx(2 / 3)
    assert r["r2"] == pytest.approx(1 - 4 / 2)
    assert set(PRIMARY_METRIC) == {"binary", "multiclass", "regression"}
    assert "roc_auc" in kind_metrics("binary", [0, 1], [0.2, 0.7])
