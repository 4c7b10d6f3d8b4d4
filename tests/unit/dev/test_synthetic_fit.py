"""The synthetic generator's fitted parameters: pinned, so a refactoring changes none of them."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from ml.dev import synthetic_fit

pytestmark = pytest.mark.unit


def _model_digest(model: synthetic_fit.FlightsModel) -> str:
    h = hashlib.sha256()
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        h.update(f.name.encode())
        if isinstance(value, np.ndarray):
            h.update(str(value.dtype).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        elif f.name == "dtypes":
            h.update(repr({k: str(t) for k, t in value.items()}).encode())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def test_fitted_model_is_pinned():
    assert _model_digest(synthetic_fit.fitted_model()) == (
        "09b2cb1ef614e9de257178b24a739e50367c34104e5028bdc1978a544ff49bee"
    )
    assert synthetic_fit.fitted_model() is synthetic_fit.fitted_model()  # fitted once


def test_groups_are_hour_band_by_season():
    hour = np.array([0, 8, 9, 12, 13, 17, 19, 20, 23])
    month = np.array([1, 12, 3, 6, 9, 2, 7, 11, 5])
    # bands [0,9) [9,13) [13,17) [17,20) [20,24); seasons DJF 0, MAM 1, JJA 2, SON 3
    assert synthetic_fit.group_of(hour, month).tolist() == [0, 0, 5, 6, 11, 12, 14, 19, 17]
