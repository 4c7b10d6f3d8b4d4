"""The tabular PyTorch network: built from a config, raw outputs (or binary probabilities) out,
its dynamic-int8 form.

Ships inside the registered model: imports numpy, torch and `ml.training.tensors` only.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ml.training.tensors import frame_tensors

if TYPE_CHECKING:
    import pandas as pd

    from ml.features.transform import FeatureTransform


class TabularNet(nn.Module):
    """Embeddings for categoricals, concatenated with numerics, into an MLP with `outputs` raw
    outputs (one logit or value: shape (n,); one logit per class: shape (n, outputs)).

    Embedding width is `min(emb_dim, cardinality)`; `layers` hidden layers of `hidden` units,
    each Linear -> BatchNorm -> ReLU -> Dropout.
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        hidden: int,
        emb_dim: int,
        dropout: float,
        layers: int,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        self.outputs = outputs
        self.embeddings = nn.ModuleList(nn.Embedding(n, min(emb_dim, n)) for n in cardinalities)
        width = n_numeric + sum(min(emb_dim, n) for n in cardinalities)
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [
                nn.Linear(width, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
            width = hidden
        self.mlp = nn.Sequential(*blocks, nn.Linear(width, outputs))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        out = self.mlp(torch.cat(parts, dim=1))
        return out.squeeze(1) if self.outputs == 1 else out


def build_network(
    n_numeric: int,
    cardinalities: list[int],
    hidden: int = 64,
    emb_dim: int = 8,
    dropout: float = 0.1,
    layers: int = 2,
    outputs: int = 1,
) -> TabularNet:
    """A fresh `TabularNet` (see there for its shape)."""
    if layers < 1 or hidden < 1 or outputs < 1:
        raise ValueError(
            f"network: layers, hidden and outputs must be >= 1, got {layers}, {hidden}, {outputs}"
        )
    return TabularNet(n_numeric, list(cardinalities), hidden, emb_dim, dropout, layers, outputs)


def network_from_config(transform: FeatureTransform, config: dict) -> TabularNet:
    """The network for a transform and the `network` section of a model config."""
    return build_network(len(transform.numeric), transform.cardinalities, **config)


def quantize_dynamic(network):
    """Linear layers int8 (weights), activations quantized at run time: CPU inference."""
    from torch.ao.quantization import quantize_dynamic as _quantize

    return _quantize(copy.deepcopy(network).eval(), {torch.nn.Linear}, dtype=torch.qint8)


def predict_proba(
    network, frame: pd.DataFrame, transform: FeatureTransform, batch_size: int = 65536
):
    """Probabilities for a model-input frame, in batches, on the CPU."""
    numeric, categorical, _ = frame_tensors(frame, transform, target=False)
    return predict_tensors(network, numeric, categorical, batch_size)


def predict_tensors(network, numeric, categorical, batch_size: int = 65536):
    """Probabilities (float32 numpy) of a one-logit network for input tensors, in batches."""
    raw = raw_tensors(network, numeric, categorical, batch_size)
    return (1.0 / (1.0 + np.exp(-raw.astype(np.float64)))).astype(np.float32)


def predict_raw(network, frame: pd.DataFrame, transform: FeatureTransform, batch_size: int = 65536):
    """Raw outputs (logits or standardized values) for a model-input frame, on the CPU."""
    numeric, categorical, _ = frame_tensors(frame, transform, target=False)
    return raw_tensors(network, numeric, categorical, batch_size)


def raw_tensors(network, numeric, categorical, batch_size: int = 65536):
    """Raw outputs (float32 numpy, (n,) or (n, outputs)) for input tensors, in batches, on the
    network's device."""
    network.eval()
    device = next(network.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(numeric), batch_size):
            logits = network(
                numeric[start : start + batch_size].to(device),
                categorical[start : start + batch_size].to(device),
            )
            out.append(logits.float().cpu().numpy())
    if out:
        return np.concatenate(out)
    width = getattr(network, "outputs", 1)
    return np.zeros((0,) if width == 1 else (0, width), dtype=np.float32)
