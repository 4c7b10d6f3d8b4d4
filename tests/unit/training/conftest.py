"""The synthetic training data the training unit tests share."""

from __future__ import annotations

import pytest

from ml.training.loader import synthetic_features


@pytest.fixture(scope="module")
def data():
    frame, transform = synthetic_features(4000, seed=0)
    val, _ = synthetic_features(1000, seed=1)
    return frame, val, transform
