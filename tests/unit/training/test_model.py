"""The pyfunc: raw rows in, the network's probabilities out (transform inside); saved from code
with its state as data (JSON and plain arrays), so nothing in it is a pickle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ml.training.params import TrainParams
from tests.unit.training._fit import SMALL, fit

pytestmark = pytest.mark.unit


def save(folder, network, transform, **extra_config):
    """The model saved as `log_pyfunc` logs it (entry file, data files, shipped code)."""
    import mlflow

    from ml.training.package import copy_shipped_code, entry_file, model_files

    stage = folder / "stage"
    stage.mkdir()
    config = {"network": TrainParams.from_dict(SMALL).network_config(), **extra_config}
    mlflow.pyfunc.save_model(
        str(folder / "model"),
        python_model=entry_file(),
        artifacts=model_files(stage, network, transform, config),
        code_paths=[str(copy_shipped_code(stage / "code"))],
        pip_requirements=["torch"],
    )
    return folder / "model"


def raw_rows(val, transform) -> pd.DataFrame:
    raw = pd.DataFrame({c: val[f"num__{c}"].astype("float64") for c in transform.numeric})
    for c in transform.categorical:
        raw[c] = [transform.vocab[c][k - 1] for k in val[f"cat__{c}"]]
    return raw


def test_pyfunc_takes_raw_rows_and_agrees_with_the_network(data, tmp_path):
    import mlflow

    from ml.training.network import predict_proba

    _, val, transform = data
    network, _ = fit(data, epochs=1)
    raw = raw_rows(val, transform)
    raw.loc[0, "c0"] = "never-seen"  # out of vocabulary: the OOV embedding, no error
    loaded = mlflow.pyfunc.load_model(str(save(tmp_path, network, transform)))
    out = loaded.predict(raw)
    expected = predict_proba(network, transform.apply(raw), transform)
    assert list(out.columns) == ["probability"] and len(out) == len(raw)
    np.testing.assert_allclose(out["probability"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    same = predict_proba(network, val, transform)
    np.testing.assert_allclose(out["probability"].to_numpy()[1:], same[1:], rtol=1e-5, atol=1e-6)


def test_the_int8_model_loads_from_plain_arrays_and_predicts_as_the_trained_one(data, tmp_path):
    import mlflow

    from ml.training.compact import prune_magnitude
    from ml.training.network import predict_proba, quantize_dynamic

    _, val, transform = data
    network, _ = fit(data, epochs=1)
    compact = quantize_dynamic(prune_magnitude(network, 0.3))
    loaded = mlflow.pyfunc.load_model(str(save(tmp_path, compact, transform, quantized=True)))
    out = loaded.predict(raw_rows(val, transform))["probability"].to_numpy()
    # The same int8 weights, scales and float biases (checked exactly below): the same
    # probabilities, up to the head's float64 sigmoid of the same logits.
    np.testing.assert_allclose(out, predict_proba(compact, val, transform), rtol=1e-6, atol=0)
    inner = loaded.unwrap_python_model().network
    assert inner.mlp[0].weight().int_repr().equal(compact.mlp[0].weight().int_repr())


def test_the_saved_model_is_code_and_data_with_no_pickle_in_it(data, tmp_path):
    _, _, transform = data
    network, _ = fit(data, epochs=1)
    model = save(tmp_path, network, transform)
    files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
    assert "model_code.py" in files and "artifacts/weights.npz" in files
    assert not [f for f in files if f.endswith((".pkl", ".pt", ".pth", ".pickle"))], files
    for path in model.rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".npz"):
            # A pickle starts with the PROTO opcode (0x80); text files never do.
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"
    mlmodel = (model / "MLmodel").read_text()
    assert "mlflow.pyfunc.loaders.code_model" in mlmodel and "python_model:" not in mlmodel


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
