"""Calibration of a trained network's probabilities after training.

An affine map of the raw outputs is fitted by minimizing the log loss, and stored in the head
(`scale`, `bias`: `ml.training.heads`) that ships in the model config. Binary: `p =
sigmoid(a * logit + b)`; multiclass: `softmax(a * logits + b)` (one temperature, a bias per
class). The methods (train param `calibration`):

- `scale_prior` (default): the scale of Platt scaling fitted on the validation split, then the
  bias alone, with that scale, on the train split. The held-out days say how far the network's
  confidence shrinks on days it has not seen; the train split says the base rate (the
  validation days of a time split are one season: their base rate is theirs, see `prior`).
  Measured on the 2013 flights (`python -m bench.training --report --kind binary`), the scale
  fitted on validation (0.76..0.84 over three seeds) is close to the one a fit on the test split
  itself would choose (0.86); test ECE 0.012..0.018 against 0.022..0.030 for `prior`.
- `prior`: the bias alone, fitted on the train split. Weighting a class by w during
  training shifts its logit by log(w) only at convergence; early stopping leaves it elsewhere.
  Fitting the bias on the rows the network was trained on puts the base rate back where the
  training data has it, whatever the weighting did, and takes nothing from the validation days
  (a time split's validation days may have a base rate of their own: on the 2013 flights, 13.8 %
  delayed in validation against 23.1 % in train and 22.2 % in test).
- `affine`: Platt scaling (scale and bias) on the validation split.
- `temperature`: the scale alone on the validation split.
- `none`: the prior shift of the weighting undone, nothing fitted.

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
# The splits each method is fitted on, in the order `calibrate_splits` uses them.
CALIBRATION_SPLITS = {
    "scale_prior": ("validation", "train"),
    "prior": ("train",),
    "affine": ("validation",),
    "temperature": ("validation",),
    "none": (),
}


def calibrate_splits(head: dict[str, Any], outputs_of, method: str) -> dict[str, Any]:
    """The head calibrated by `method` on the splits it is fitted on (`CALIBRATION_SPLITS`);
    `outputs_of(split)` gives that split's (raw outputs, targets)."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: use one of {METHODS}")
    if method != "scale_prior":
        splits = CALIBRATION_SPLITS[method]
        raw, y = outputs_of(splits[0]) if splits else ((), ())
        return calibrate(head, raw, y, method)
    # Scale from the held-out days, then the bias on the train split with that scale.
    scaled = calibrate(head, *outputs_of("validation"), "affine")
    if scaled["calibration"] == "none":
        return calibrate(head, *outputs_of("train"), "prior")
    raw, y = outputs_of("train")
    return {**calibrate(head, raw, y, "prior", scale=scaled["scale"]), "calibration": method}


def calibrate(
    head: dict[str, Any], raw_validation, y_validation, method: str = "affine", scale: float = 1.0
) -> dict[str, Any]:
    """The head with `scale` and `bias` fitted on the validation split's raw outputs (binary
    and multiclass); a regression head, or a validation split without rows, as it is.

    `method`: `affine` fits scale and bias (Platt; temperature plus class biases),
    `temperature` the scale alone, `prior` the bias alone (the caller passes the train split's
    outputs for it), `none` nothing. `scale`: the scale `prior` keeps fixed.
    """
    if method not in METHODS or method == "scale_prior":
        raise ValueError(f"calibration method {method!r}: use one of {METHODS}")
    if head["kind"] not in (BINARY, MULTICLASS) or not len(y_validation) or method == "none":
        return {**head, "calibration": "none"}
    z = torch.as_tensor(np.asarray(raw_validation, dtype="float64"))
    y = torch.as_tensor(np.asarray(y_validation, dtype="float64"))
    free_bias = method in ("affine", "prior")
    free_scale = method != "prior"
    if head["kind"] == BINARY:

        def loss(z, a, b):
            return F.binary_cross_entropy_with_logits(a * z + b, y)

        scale, bias = _fit(z, y, loss, 1, free_bias, free_scale, scale)
    else:
        labels = y.long()

        def loss(z, a, b):
            return F.cross_entropy(a * z + b, labels)

        scale, bias = _fit(z, y, loss, z.shape[1], free_bias, free_scale, scale)
    log.info("calibration on %s validation rows: scale %.4f, bias %s", len(y), scale, bias)
    return {**head, "scale": scale, "bias": bias, "calibration": method}


def _fit(
    z, y, loss_of, width: int, free_bias: bool, free_scale: bool = True, scale: float = 1.0
) -> tuple[float, list[float]]:
    a = torch.full((), scale, dtype=torch.float64, requires_grad=free_scale)
    b = torch.zeros(width if width > 1 else (), dtype=torch.float64, requires_grad=free_bias)
    params = [p for p, free in ((a, free_scale), (b, free_bias)) if free]
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
        return scale, [0.0] * width
    bias = b.detach().reshape(-1).tolist()
    return float(a.detach()), bias
