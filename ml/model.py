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

    from ml.features import FeatureTransform

TRANSFORM_ARTIFACT = "transform"
WEIGHTS_ARTIFACT = "weights"
CONFIG_ARTIFACT = "config"


def build_network(
    n_numeric: int,
    cardinalities: list[int],
    hidden: int = 64,
    emb_dim: int = 8,
    dropout: float = 0.1,
):
    """Embeddings for categoricals, concatenated with numerics, into an MLP with one logit."""
    import torch
    from torch import nn

    class TabularNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(nn.Embedding(n, min(emb_dim, n)) for n in cardinalities)
            width = n_numeric + sum(min(emb_dim, n) for n in cardinalities)
            self.mlp = nn.Sequential(
                nn.Linear(width, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, 1),
            )

        def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
            parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

    return TabularNet()


def tensors(frame: pd.DataFrame, transform: FeatureTransform) -> tuple[torch.Tensor, torch.Tensor]:
    """Column slices of a model-input frame (`num__*`, `cat__*`) as two tensors, no per-row work."""
    import numpy as np
    import torch

    numeric = frame[[f"num__{c}" for c in transform.numeric]].to_numpy(dtype=np.float32, copy=True)
    categorical = frame[[f"cat__{c}" for c in transform.categorical]].to_numpy(
        dtype=np.int64, copy=True
    )
    return torch.from_numpy(numeric), torch.from_numpy(categorical)


def predict_proba(
    network, frame: pd.DataFrame, transform: FeatureTransform, batch_size: int = 65536
):
    """Probabilities for a model-input frame, in batches, on the CPU."""
    import numpy as np
    import torch

    network.eval()
    numeric, categorical = tensors(frame, transform)
    out = []
    with torch.inference_mode():
        for start in range(0, len(frame), batch_size):
            logits = network(
                numeric[start : start + batch_size], categorical[start : start + batch_size]
            )
            out.append(torch.sigmoid(logits).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class DelayModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: joined raw rows in, `probability` out (transform + network inside)."""

    def load_context(self, context: Any) -> None:
        import torch

        from ml.features import FeatureTransform

        with open(context.artifacts[TRANSFORM_ARTIFACT]) as fh:
            self.transform = FeatureTransform.from_json(fh.read())
        with open(context.artifacts[CONFIG_ARTIFACT]) as fh:
            self.config = json.load(fh)
        self.network = build_network(
            len(self.transform.numeric), self.transform.cardinalities, **self.config["network"]
        )
        state = torch.load(
            context.artifacts[WEIGHTS_ARTIFACT], map_location="cpu", weights_only=True
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
