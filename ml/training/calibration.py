"""Calibration of a trained network's probabilities on the validation split.

After training, an affine map of the raw outputs is fitted by minimizing the log loss on the
validation split, and stored in the head (`scale`, `bias`: `ml.training.heads`) that ships in
the model config:

- binary: Platt scaling, `p = sigmoid(a * logit + b)`. The positive weighting of training
  leaves the logit's scale and offset off (its prior shift is undone only in expectation); `b`
  absorbs what remains.
- multiclass: temperature plus a bias per class, `softmax(logits / T + b)` (vector scaling
  restricted to one temperature), which keeps the classes' order for `b = 0`.

Regression heads are left as they are. Fitted with L-BFGS on the CPU (a handful of
parameters over the validation rows).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ml.features.target import BINARY, MULTICLASS
from ml.training.params import CALIBRATIONS

log = logging.getLogger(__name__)


METHODS = CALIBRATIONS


def calibrate(
    head: dict[str, Any], raw_validation, y_validation, method: str = "affine"
) -> dict[str, Any]:
    """The head with `scale` and `bias` fitted on the validation split's raw outputs (binary
    and multiclass); a regression head, or a validation split without rows, as it is.

    `method`: `affine` fits scale and bias (Platt; temperature plus class biases),
    `temperature` the scale alone (the base rate the network learned is kept), `none` nothing.
    """
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: use one of {METHODS}")
    if head["kind"] not in (BINARY, MULTICLASS) or not len(y_validation) or method == "none":
        return {**head, "calibration": "none"}
    z = torch.as_tensor(np.asarray(raw_validation, dtype="float64"))
    y = torch.as_tensor(np.asarray(y_validation, dtype="float64"))
    free_bias = method == "affine"
    if head["kind"] == BINARY:

        def loss(z, a, b):
            return F.binary_cross_entropy_with_logits(a * z + b, y)

        scale, bias = _fit(z, y, loss, 1, free_bias)
    else:
        labels = y.long()

        def loss(z, a, b):
            return F.cross_entropy(a * z + b, labels)

        scale, bias = _fit(z, y, loss, z.shape[1], free_bias)
    log.info("calibration on %s validation rows: scale %.4f, bias %s", len(y), scale, bias)
    return {**head, "scale": scale, "bias": bias, "calibration": method}


def _fit(z, y, loss_of, width: int, free_bias: bool) -> tuple[float, list[float]]:
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(width if width > 1 else (), dtype=torch.float64, requires_grad=free_bias)
    params = [a, b] if free_bias else [a]
    optimizer = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_of(z, a, b)
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(loss_of(z, a, b))
    optimizer.step(closure)
    with torch.no_grad():
        after = float(loss_of(z, a, b))
    if not np.isfinite(after) or after > before:  # never worse than no calibration
        return 1.0, [0.0] * width
    bias = b.detach().reshape(-1).tolist()
    return float(a.detach()), bias
