"""A model-input frame (`num__*`, `cat__*`, target) as tensors: whole columns, no per-row work.

Ships inside the registered model: imports numpy, torch and `ml.features.derived` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ml.features.derived import TARGET

if TYPE_CHECKING:
    import pandas as pd

    from ml.features.transform import FeatureTransform


def numeric_columns(transform: FeatureTransform) -> list[str]:
    return [f"num__{c}" for c in transform.numeric]


def categorical_columns(transform: FeatureTransform) -> list[str]:
    return [f"cat__{c}" for c in transform.categorical]


def frame_tensors(frame: pd.DataFrame, transform: FeatureTransform, target: bool = True):
    """(numeric float32, categorical int64, target float32 or None) from a model-input frame."""
    numeric = frame[numeric_columns(transform)].to_numpy(dtype=np.float32, copy=True)
    categorical = frame[categorical_columns(transform)].to_numpy(dtype=np.int64, copy=True)
    y = (
        torch.from_numpy(frame[TARGET].to_numpy(dtype=np.float32, copy=True))
        if target and TARGET in frame
        else None
    )
    return torch.from_numpy(numeric), torch.from_numpy(categorical), y
