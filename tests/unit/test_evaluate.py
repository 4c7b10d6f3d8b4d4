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


def test_the_outputs_tell_the_kind_measured():
    import pandas as pd

    from ml.promotion_rule import EvaluationError

    y = [0, 1, 2, 1]
    multi = pd.DataFrame(np.eye(3)[y], columns=["probability_a", "probability_b", "probability_c"])
    multi["predicted_class"] = ["a", "b", "c", "b"]
    assert evaluate.output_metrics(y, multi)["macro_f1"] == 1.0
    regression = evaluate.output_metrics([1.0, 3.0], pd.DataFrame({"prediction": [1.0, 2.0]}))
    assert set(regression) == {"rmse", "mae", "r2"}
    binary = evaluate.output_metrics([0, 1], pd.DataFrame({"probability": [0.1, 0.8]}))
    assert "brier" in binary
    with pytest.raises(EvaluationError, match="none of probability"):
        evaluate.output_metrics([0], pd.DataFrame({"score": [1.0]}))
