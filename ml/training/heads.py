"""The network's output head per target kind: how many outputs, how raw outputs become
predictions, and what the predictions are called.

A head is a JSON mapping (it ships in the model config, key `target`): the target's spec
(`ml.features.target.target_spec`) plus what training fitted:

- every kind: `scale` and `bias` (one per output), an affine map of the raw outputs fitted on
  the validation split after training (`ml.training.calibration`): Platt scaling of the binary
  logit, temperature plus a bias per class for multiclass; 1 and 0 before calibration;
- regression: `mean` and `std` of the (transformed) train target: the network learns the
  standardized value and its prediction is turned back into the column's own scale;
- multiclass: `decision_weights`, the balanced class weights of the train split: the predicted
  class is the most probable after weighting (`argmax p_k * w_k`), the decision that serves
  macro-F1 on imbalanced classes; the probabilities themselves stay calibrated.

Predictions: binary `probability`; multiclass `probability_<class>` per class and
`predicted_class` (the most probable); regression `prediction`. A model config without a head
(models trained before heads existed) is an uncalibrated binary one.

numpy/pandas only (plus `ml.features.target`): this ships inside the registered model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ml.features.target import BINARY, MULTICLASS, REGRESSION, check_class_fractions

if TYPE_CHECKING:
    import pandas as pd

PROBABILITY = "probability"
PREDICTED_CLASS = "predicted_class"
PREDICTION = "prediction"
LEGACY_HEAD: dict[str, Any] = {"kind": BINARY, "scale": 1.0, "bias": [0.0]}


def n_outputs(spec: dict[str, Any]) -> int:
    """Output units of the network: one per class for multiclass, else one."""
    return len(spec["classes"]) if spec["kind"] == MULTICLASS else 1


def head_config(spec: dict[str, Any], y_train) -> dict[str, Any]:
    """A head for a target spec and the train split's encoded targets (checked: a multiclass
    class under `min_class_fraction` is refused; a regression target is standardized)."""
    y = np.asarray(y_train, dtype="float64")
    head = {**spec, "scale": 1.0, "bias": [0.0] * n_outputs(spec)}
    if spec["kind"] == MULTICLASS:
        check_class_fractions(y, spec)
        head["decision_weights"] = class_weights(y, spec)
    if spec["kind"] == REGRESSION:
        z = forward_transform(y, spec)
        head["mean"] = float(z.mean()) if len(z) else 0.0
        std = float(z.std()) if len(z) > 1 else 1.0
        head["std"] = std if np.isfinite(std) and std > 0 else 1.0
    return head


def forward_transform(y, head: dict[str, Any]):
    """The regression target on the scale the model learns it (before standardizing)."""
    y = np.asarray(y, dtype="float64")
    return np.log1p(y) if head.get("transform") == "log1p" else y


def class_weights(y_train, head: dict[str, Any]) -> list[float]:
    """Balanced weights (n / (K * count)) of the classes of a classification head, capped at 50."""
    k = max(n_outputs(head), 2)
    counts = np.bincount(np.asarray(y_train, dtype="int64"), minlength=k).astype("float64")
    weights = len(y_train) / (k * np.maximum(counts, 1.0))
    return np.minimum(weights, 50.0).tolist()


def calibrated(raw, head: dict[str, Any]):
    """Raw outputs through the head's fitted affine map (`scale`, `bias`)."""
    raw = np.asarray(raw, dtype="float64")
    bias = np.asarray(head.get("bias", [0.0]), dtype="float64")
    out = raw * float(head.get("scale", 1.0)) + (bias if raw.ndim == 2 else bias[0])
    return out


def activate(raw, head: dict[str, Any] | None):
    """Raw outputs -> binary probabilities (n,), class probabilities (n, K) or values (n,)."""
    head = head or LEGACY_HEAD
    z = calibrated(raw, head)
    if head["kind"] == BINARY:
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
    if head["kind"] == MULTICLASS:
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    value = z * head["std"] + head["mean"]
    return np.expm1(value) if head.get("transform") == "log1p" else value


def predicted_index(proba, head: dict[str, Any]):
    """The predicted class of each row of class probabilities: argmax of `p * decision_weights`."""
    weights = np.asarray(head.get("decision_weights") or [1.0] * proba.shape[1])
    return (np.asarray(proba) * weights).argmax(axis=1)


def probability_column(name: str) -> str:
    return f"{PROBABILITY}_{name}"


def output_columns(head: dict[str, Any] | None) -> dict[str, str]:
    """The prediction columns of a head and their pandas dtypes, in order."""
    head = head or LEGACY_HEAD
    if head["kind"] == BINARY:
        return {PROBABILITY: "float64"}
    if head["kind"] == MULTICLASS:
        columns = {probability_column(c): "float64" for c in head["classes"]}
        return {**columns, PREDICTED_CLASS: "string"}
    return {PREDICTION: "float64"}


def prediction_frame(raw, head: dict[str, Any] | None, index) -> pd.DataFrame:
    """The model's output frame: the columns of `output_columns`."""
    import pandas as pd

    head = head or LEGACY_HEAD
    values = activate(raw, head)
    if head["kind"] == MULTICLASS:
        out = {probability_column(c): values[:, i] for i, c in enumerate(head["classes"])}
        best = np.asarray(head["classes"], dtype=object)[predicted_index(values, head)]
        out[PREDICTED_CLASS] = pd.array(best, dtype="string")
        return pd.DataFrame(out, index=index)
    name = PROBABILITY if head["kind"] == BINARY else PREDICTION
    return pd.DataFrame({name: values.astype("float64")}, index=index)


def frame_values(frame: pd.DataFrame, head: dict[str, Any] | None):
    """The inverse of `prediction_frame` for metrics: probabilities (n,) or (n, K), or values."""
    head = head or LEGACY_HEAD
    if head["kind"] == MULTICLASS:
        cols = [probability_column(c) for c in head["classes"]]
        return frame[cols].to_numpy(dtype="float64")
    name = PROBABILITY if head["kind"] == BINARY else PREDICTION
    return frame[name].to_numpy(dtype="float64")
