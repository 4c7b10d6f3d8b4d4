"""The model: a tabular PyTorch network, and the MLflow pyfunc that bundles it with the transform.

The registered model takes joined raw rows (a pandas frame) and returns the probability of a
delay: the fitted feature transform travels inside it, so scoring applies exactly the transform
that training used.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from ml.features.transform import FeatureTransform

TRANSFORM_ARTIFACT = "transform"
WEIGHTS_ARTIFACT = "weights"
CONFIG_ARTIFACT = "config"


def build_network(
    n_numeric: int,
    cardinalities: list[int],
    hidden: int = 64,
    emb_dim: int = 8,
    dropout: float = 0.1,
    layers: int = 2,
):
    """Embeddings for categoricals, concatenated with numerics, into an MLP with one logit.

    Embedding width is `min(emb_dim, cardinality)`; `layers` hidden layers of `hidden` units,
    each Linear -> BatchNorm -> ReLU -> Dropout.
    """
    import torch
    from torch import nn

    if layers < 1 or hidden < 1:
        raise ValueError(f"network: layers and hidden must be >= 1, got {layers} and {hidden}")

    class TabularNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
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
            self.mlp = nn.Sequential(*blocks, nn.Linear(width, 1))

        def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
            parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

    return TabularNet()


def network_from_config(transform: FeatureTransform, config: dict):
    """The network for a transform and the `network` section of a model config."""
    return build_network(len(transform.numeric), transform.cardinalities, **config)


def tensors(frame: pd.DataFrame, transform: FeatureTransform) -> tuple[torch.Tensor, torch.Tensor]:
    """Column slices of a model-input frame (`num__*`, `cat__*`) as two tensors, no per-row work."""
    from ml.training.loader import frame_tensors

    numeric, categorical, _ = frame_tensors(frame, transform, target=False)
    return numeric, categorical


def predict_proba(
    network, frame: pd.DataFrame, transform: FeatureTransform, batch_size: int = 65536
):
    """Probabilities for a model-input frame, in batches, on the CPU."""
    numeric, categorical = tensors(frame, transform)
    return predict_tensors(network, numeric, categorical, batch_size)


def predict_tensors(network, numeric, categorical, batch_size: int = 65536):
    """Probabilities (float32 numpy) for input tensors, in batches, on the network's device."""
    import numpy as np
    import torch

    network.eval()
    device = next(network.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(numeric), batch_size):
            logits = network(
                numeric[start : start + batch_size].to(device),
                categorical[start : start + batch_size].to(device),
            )
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class DelayModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: joined raw rows in, `probability` out (transform + network inside)."""

    def load_context(self, context: Any) -> None:
        import torch

        from ml.features.transform import FeatureTransform

        with open(context.artifacts[TRANSFORM_ARTIFACT]) as fh:
            self.transform = FeatureTransform.from_json(fh.read())
        with open(context.artifacts[CONFIG_ARTIFACT]) as fh:
            self.config = json.load(fh)
        self.network = network_from_config(self.transform, self.config["network"])
        if self.config.get("quantized"):
            # A dynamic-int8 network: rebuild the same quantized modules, then load its weights.
            from ml.training.compress import quantize_dynamic

            self.network = quantize_dynamic(self.network)
        # Our own artifact; a quantized state dict holds packed params that weights_only rejects.
        state = torch.load(
            context.artifacts[WEIGHTS_ARTIFACT],
            map_location="cpu",
            weights_only=not self.config.get("quantized"),
        )
        self.network.load_state_dict(state)
        self.network.eval()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        import pandas as pd

        inputs = self.transform.apply(model_input)
        proba = predict_proba(self.network, inputs, self.transform)
        return pd.DataFrame({"probability": proba.astype("float64")}, index=model_input.index)
