"""The fit loop: determinism, resuming from a checkpoint, a NaN loss."""

from __future__ import annotations

import numpy as np
import pytest

from ml.training import checkpoint
from ml.training.fit import TrainingDivergedError
from tests.unit.training._fit import fit, same_weights, weights

pytestmark = pytest.mark.unit


def test_training_is_deterministic_with_a_fixed_seed_and_learns(data):
    net1, hist1 = fit(data)
    net2, hist2 = fit(data)
    assert same_weights(weights(net1), weights(net2))
    assert [r["train_loss"] for r in hist1] == [r["train_loss"] for r in hist2]
    net3, _ = fit(data, seed=7)
    assert not same_weights(weights(net1), weights(net3))
    assert hist1[-1]["val_roc_auc"] > 0.7  # the generated target is learnable


def test_resume_from_a_checkpoint_continues_where_it_stopped(data, tmp_path):
    import fsspec

    fs = fsspec.filesystem("file")
    full, full_hist = fit(data, epochs=4)
    store = checkpoint.CheckpointStore(str(tmp_path / "ckpt"), fs=fs)
    fit(data, store=store, epochs=2)
    assert store.latest()["epoch"] == 1
    resumed, hist = fit(data, store=store, epochs=4)
    assert [r["epoch"] for r in hist] == [0, 1, 2, 3]
    # Same batches, RNG and optimizer state: bit-for-bit the uninterrupted run.
    assert [r["train_loss"] for r in hist] == [r["train_loss"] for r in full_hist]
    assert same_weights(weights(resumed), weights(full))
    assert len(list((tmp_path / "ckpt").glob("epoch-*.pt"))) <= checkpoint.KEEP


def test_nan_in_the_input_stops_training_with_a_clear_error(data):
    frame, val, transform = data
    bad = frame.copy()
    bad.loc[10, "num__x0"] = np.nan
    with pytest.raises(TrainingDivergedError, match=r"epoch 0.*NaN/inf"):
        fit((bad, val, transform))


def _relabelled(data, kind: str):
    """The synthetic frames with a multiclass or regression target made from their inputs."""
    frame, val, transform = data

    def label(f):
        x0, x1 = f["num__x0"].to_numpy(), f["num__x1"].to_numpy()
        if kind == "regression":
            return (3.0 * x0 - 2.0 * x1 + 10.0).astype("float32")
        return np.digitize(x0 - x1, [-0.8, 0.8]).astype("float32")

    return frame.assign(target=label(frame)), val.assign(target=label(val)), transform


def test_multiclass_fit_has_one_output_per_class_and_learns(data):
    from ml.metrics import multiclass_metrics
    from ml.training.heads import activate, head_config
    from ml.training.network import raw_tensors
    from ml.training.tensors import frame_tensors

    frame, val, transform = _relabelled(data, "multiclass")
    spec = {"kind": "multiclass", "source_column": "s", "classes": ["lo", "mid", "hi"]}
    head = head_config(spec, frame["target"])
    network, history = fit((frame, val, transform), head=head, epochs=4)
    assert {"val_loss", "val_log_loss", "val_macro_f1"} <= set(history[-1])
    numeric, categorical, y = frame_tensors(val, transform)
    raw = raw_tensors(network, numeric, categorical)
    assert raw.shape == (len(val), 3)
    assert multiclass_metrics(y.numpy(), activate(raw, head))["macro_f1"] > 0.7


def test_regression_fit_learns_the_value_on_its_own_scale(data):
    from ml.metrics import regression_metrics
    from ml.training.heads import activate, head_config
    from ml.training.network import raw_tensors
    from ml.training.tensors import frame_tensors

    frame, val, transform = _relabelled(data, "regression")
    head = head_config({"kind": "regression", "source_column": "s"}, frame["target"])
    network, history = fit((frame, val, transform), head=head, epochs=6)
    assert {"val_loss", "val_rmse"} <= set(history[-1]) and "val_log_loss" not in history[-1]
    numeric, categorical, y = frame_tensors(val, transform)
    predicted = activate(raw_tensors(network, numeric, categorical), head)
    assert regression_metrics(y.numpy(), predicted)["r2"] > 0.9
