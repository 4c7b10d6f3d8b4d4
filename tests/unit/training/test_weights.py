"""Weights as plain arrays: every state dict the model holds round-trips bit for bit, and what is
not a plain-array weights file (a pickle above all) is refused without being run."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ml.training.network import build_network, quantize_dynamic
from ml.training.weights import WeightsFileError, load_weights, save_weights

pytestmark = pytest.mark.unit


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, torch.Tensor):
        if a.is_quantized:
            return (
                b.is_quantized
                and a.dtype == b.dtype
                and a.qscheme() == b.qscheme()
                and torch.equal(a.int_repr(), b.int_repr())
                and torch.equal(a.dequantize(), b.dequantize())
            )
        return a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("quantized", [False, True])
def test_a_state_dict_round_trips_exactly(tmp_path, quantized):
    network = build_network(3, [4, 5], hidden=8, emb_dim=2, layers=2)
    if quantized:
        network = quantize_dynamic(network)
    state = network.state_dict()
    save_weights(state, tmp_path / "w.npz")
    back = load_weights(tmp_path / "w.npz")
    assert list(back) == list(state)
    assert all(_same(state[k], back[k]) for k in state), [
        k for k in state if not _same(state[k], back[k])
    ]


def test_per_channel_quantized_tensors_round_trip(tmp_path):
    w = torch.randn(4, 3)
    q = torch.quantize_per_channel(
        w, torch.rand(4) + 0.01, torch.zeros(4, dtype=torch.long), 0, torch.qint8
    )
    save_weights({"w": q, "none": None, "dtype": torch.qint8}, tmp_path / "w.npz")
    back = load_weights(tmp_path / "w.npz")
    assert _same(q, back["w"]) and back["none"] is None and back["dtype"] is torch.qint8


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch", "object-array"])
def test_a_pickle_in_place_of_the_weights_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "ran"
    path = tmp_path / "w.npz"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"w": Payload(str(marker))}))
    elif writer == "torch":
        torch.save({"w": Payload(str(marker))}, path)
    else:  # a real .npz whose member is a pickled object array
        with open(path, "wb") as fh:
            np.savez(
                fh, __layout__=np.array("{}"), a0=np.array([Payload(str(marker))], dtype=object)
            )
    with pytest.raises(WeightsFileError, match=r"w\.npz"):
        load_weights(path)
    assert not marker.exists()


def test_a_bare_array_or_a_foreign_layout_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(WeightsFileError, match=r"not an \.npz"):
        load_weights(tmp_path / "a.npy")
    with open(tmp_path / "b.npz", "wb") as fh:
        np.savez(fh, __layout__=np.array('{"format": "other", "entries": {}}'))
    with pytest.raises(WeightsFileError, match="format"):
        load_weights(tmp_path / "b.npz")
    with open(tmp_path / "c.npz", "wb") as fh:
        np.savez(fh, a0=np.zeros(2))
    with pytest.raises(WeightsFileError, match="bad layout"):
        load_weights(tmp_path / "c.npz")
