"""What the training unit tests share: a small learnable data set and a small fit on it."""

from __future__ import annotations

import torch

from ml.training.fit import fit_network
from ml.training.loader import Batches
from ml.training.params import TrainParams
from ml.training.tensors import frame_tensors

SMALL = {"epochs": 3, "hidden": 32, "layers": 2, "emb_dim": 4, "batch_size": 256, "patience": 5}


def fit(data, store=None, head=None, **overrides):
    frame, val, transform = data
    hp = TrainParams.from_dict({**SMALL, **overrides})
    batches = Batches(
        frame_tensors(frame, transform), transform, batch_size=hp.batch_size, seed=hp.seed
    )
    return fit_network(
        batches,
        frame_tensors(val, transform),
        transform,
        hp,
        device="cpu",
        checkpoint=store,
        head=head,
    )


def weights(network) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in network.state_dict().items()}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
