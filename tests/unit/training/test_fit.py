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
