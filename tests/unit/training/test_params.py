"""Training params: checked on the way in; the compact variant's defaults."""

from __future__ import annotations

import pytest

from ml.errors import BadInputError
from ml.training.params import CompressParams, InvalidParamsError, TrainParams

pytestmark = pytest.mark.unit


def test_params_are_checked():
    with pytest.raises(InvalidParamsError, match="precision"):
        TrainParams.from_dict({"precision": "fp8"})
    with pytest.raises(InvalidParamsError, match="epochs"):
        TrainParams.from_dict({"epochs": 0})
    with pytest.raises(BadInputError, match="learning_rate"):
        TrainParams.from_dict({"learning_rate": 0})


def test_unknown_and_none_values_are_ignored():
    hp = TrainParams.from_dict({"epochs": 2, "hidden": None, "compress": True})
    assert hp.epochs == 2 and hp.hidden == TrainParams().hidden
    cp = CompressParams.from_dict({"prune_amount": "0.5", "compress_tolerance": None, "x": 1})
    assert cp == CompressParams(prune_amount=0.5, compress_tolerance=0.005)
