"""The pyfunc: raw rows in, the network's probabilities out (transform inside)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ml.training.params import TrainParams
from tests.unit.training._fit import SMALL, fit

pytestmark = pytest.mark.unit


def test_pyfunc_takes_raw_rows_and_agrees_with_the_network(data, tmp_path):
    import mlflow

    from ml.training.model import CONFIG_ARTIFACT, TRANSFORM_ARTIFACT, WEIGHTS_ARTIFACT, DelayModel
    from ml.training.network import predict_proba

    _, val, transform = data
    network, _ = fit(data, epochs=1)
    (tmp_path / "t.json").write_text(transform.to_json())
    (tmp_path / "c.json").write_text(
        json.dumps({"network": TrainParams.from_dict(SMALL).network_config()})
    )
    torch.save(network.state_dict(), tmp_path / "w.pt")
    mlflow.pyfunc.save_model(
        str(tmp_path / "model"),
        python_model=DelayModel(),
        artifacts={
            TRANSFORM_ARTIFACT: str(tmp_path / "t.json"),
            CONFIG_ARTIFACT: str(tmp_path / "c.json"),
            WEIGHTS_ARTIFACT: str(tmp_path / "w.pt"),
        },
        pip_requirements=["torch"],
    )
    raw = pd.DataFrame({c: val[f"num__{c}"].astype("float64") for c in transform.numeric})
    for c in transform.categorical:
        raw[c] = [transform.vocab[c][k - 1] for k in val[f"cat__{c}"]]
    raw.loc[0, "c0"] = "never-seen"  # out of vocabulary: the OOV embedding, no error
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    out = loaded.predict(raw)
    expected = predict_proba(network, transform.apply(raw), transform)
    assert list(out.columns) == ["probability"] and len(out) == len(raw)
    np.testing.assert_allclose(out["probability"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    same = predict_proba(network, val, transform)
    np.testing.assert_allclose(out["probability"].to_numpy()[1:], same[1:], rtol=1e-5, atol=1e-6)


def test_predict_applies_the_calibrated_head_of_its_config(data):
    """The head in the model config (`target`) is what `predict` applies: calibration, and the
    output columns of the kind. Set directly on the pyfunc (no packaging involved)."""
    from ml.training.heads import activate
    from ml.training.model import DelayModel
    from ml.training.network import build_network, predict_raw

    _, val, transform = data
    torch.manual_seed(0)
    model = DelayModel()
    model.transform = transform
    model.network = build_network(len(transform.numeric), transform.cardinalities, outputs=3)
    model.network.eval()
    raw_rows = pd.DataFrame({c: val[f"num__{c}"].astype("float64") for c in transform.numeric})
    for c in transform.categorical:
        raw_rows[c] = [transform.vocab[c][k - 1] for k in val[f"cat__{c}"]]
    head = {
        "kind": "multiclass",
        "classes": ["a", "b", "c"],
        "scale": 0.5,
        "bias": [0.3, 0.0, -0.3],
        "decision_weights": [1.0, 1.0, 1.0],
    }
    model.config = {"target": head}
    out = model.predict(None, raw_rows)
    assert list(out.columns) == [
        "probability_a",
        "probability_b",
        "probability_c",
        "predicted_class",
    ]
    raw = predict_raw(model.network, transform.apply(raw_rows), transform)
    expected = activate(raw, head)
    np.testing.assert_allclose(out.iloc[:, :3].to_numpy(), expected, rtol=1e-6)
    uncalibrated = activate(raw, {**head, "scale": 1.0, "bias": [0.0, 0.0, 0.0]})
    assert not np.allclose(out.iloc[:, :3].to_numpy(), uncalibrated)
