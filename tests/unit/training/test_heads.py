"""Output heads, losses and calibration per target kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ml.metrics import expected_calibration_error
from ml.training.calibration import calibrate, calibrate_splits
from ml.training.heads import (
    activate,
    class_weights,
    frame_values,
    head_config,
    n_outputs,
    output_columns,
    prediction_frame,
)
from ml.training.losses import loss_for

pytestmark = pytest.mark.unit

MULTI = {"kind": "multiclass", "source_column": "d", "classes": ["a", "b", "c"], "other": False}
REG = {"kind": "regression", "source_column": "d", "transform": "log1p"}
BIN = {"kind": "binary", "source_column": "d", "threshold": 1.0}


def test_outputs_and_prediction_columns_follow_the_kind():
    assert n_outputs(MULTI) == 3 and n_outputs(BIN) == 1 and n_outputs(REG) == 1
    assert list(output_columns(None)) == ["probability"]  # a model without a head: binary
    assert list(output_columns(MULTI)) == [
        "probability_a",
        "probability_b",
        "probability_c",
        "predicted_class",
    ]
    assert list(output_columns(REG)) == ["prediction"]
    head = head_config(MULTI, [0, 1, 2, 2])
    raw = np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    frame = prediction_frame(raw, head, pd.RangeIndex(2))
    assert frame["predicted_class"].tolist() == ["b", "a"]
    assert np.allclose(frame_values(frame, head).sum(axis=1), 1.0)


def test_regression_head_standardizes_and_gives_the_column_scale_back():
    y = np.array([0.0, 3.0, 10.0, 100.0])
    head = head_config(REG, y)
    z = (np.log1p(y) - head["mean"]) / head["std"]
    assert np.allclose(activate(z, head), y)
    loss, offset = loss_for(head, y, weighted=True, device="cpu")
    assert offset == 0.0
    assert float(loss(torch.tensor(z), torch.tensor(y))) == pytest.approx(0.0, abs=1e-9)


def test_class_weights_and_their_prior_shift():
    y = np.array([0] * 80 + [1] * 15 + [2] * 5)
    weights = class_weights(y, MULTI)
    assert weights[2] > weights[1] > weights[0]
    _, offset = loss_for(MULTI, y, weighted=True, device="cpu")
    assert offset == pytest.approx([np.log(w) for w in weights])
    _, none = loss_for(MULTI, y, weighted=False, device="cpu")
    assert none == [0.0, 0.0, 0.0]
    _, binary = loss_for(BIN, np.array([1.0] * 25 + [0.0] * 75), weighted=True, device="cpu")
    assert binary == pytest.approx(np.log(3.0))


def test_platt_scaling_fixes_a_miscalibrated_binary_logit():
    rng = np.random.default_rng(0)
    logit = rng.normal(size=20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-logit))).astype(float)
    raw = 3.0 * logit + 1.5  # too confident and shifted: what a weighted fit can leave
    head = head_config(BIN, y)
    before = expected_calibration_error(y, activate(raw, head))
    fitted = calibrate(head, raw, y)
    after = expected_calibration_error(y, activate(raw, fitted))
    assert before > 0.1 and after < 0.02
    assert fitted["scale"] == pytest.approx(1 / 3, rel=0.1)


def test_temperature_and_class_bias_calibrate_multiclass():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20_000, 3)) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    raw = logits * 2.5 + np.array([1.0, 0.0, -1.0])
    head = head_config(MULTI, y)
    fitted = calibrate(head, raw, y)
    assert fitted["scale"] == pytest.approx(0.4, rel=0.1)
    top = activate(raw, fitted)
    hit = (top.argmax(axis=1) == y).astype(float)
    assert expected_calibration_error(hit, top.max(axis=1)) < 0.02
    assert calibrate(head_config(REG, [1.0, 2.0]), np.zeros(2), [1.0, 2.0])["scale"] == 1.0


def test_prior_fits_the_bias_alone():
    rng = np.random.default_rng(2)
    logit = rng.normal(size=20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-logit))).astype(float)
    head = head_config(BIN, y)
    fitted = calibrate(head, logit - 0.7, y, "prior")  # a prior correction that overshot
    assert fitted["scale"] == 1.0 and fitted["bias"][0] == pytest.approx(0.7, abs=0.05)
    assert fitted["calibration"] == "prior"
    with pytest.raises(ValueError, match="calibration method 'platt'"):
        calibrate(head, logit, y, "platt")


def test_scale_prior_takes_the_scale_from_validation_and_the_base_rate_from_train():
    """Validation days of a season of their own: fewer positives, the same overconfidence.
    Platt on them would shift every probability down; `scale_prior` keeps their scale only."""
    rng = np.random.default_rng(3)

    def days(n, shift):  # `shift`: what the features do not show (the season's base rate)
        logit = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(logit + shift)))).astype(float)
        return logit, y

    train_logit, y_train = days(40_000, 0.0)
    val_logit, y_val = days(20_000, -1.0)  # a calmer season
    test_logit, y_test = days(20_000, 0.0)
    # On its own train rows the network is right; on unseen days twice too confident.
    outputs = {"train": (train_logit, y_train), "validation": (2.0 * val_logit, y_val)}
    head = head_config(BIN, y_train)
    fitted = calibrate_splits(head, outputs.get, "scale_prior")
    assert fitted["calibration"] == "scale_prior"
    assert fitted["scale"] == pytest.approx(0.5, rel=0.1)
    raw_test = 2.0 * test_logit
    ece = {
        method: expected_calibration_error(
            y_test, activate(raw_test, calibrate_splits(head, outputs.get, method))
        )
        for method in ("scale_prior", "affine", "prior")
    }
    assert ece["scale_prior"] < 0.02 < min(ece["affine"], ece["prior"]), ece
