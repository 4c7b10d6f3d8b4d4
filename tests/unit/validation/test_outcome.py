"""`ContractViolation`: a contract-violation kind that keeps its details when pickled."""

from __future__ import annotations

import pickle

import pytest

from ml.errors import ContractViolationError
from ml.validation.outcome import ContractViolation
from tests.unit.validation._data import check, plant

pytestmark = pytest.mark.unit


def test_contract_violation_pickles(flights, day):
    report = check(plant(day, "distance", [0], 9000), flights)
    exc = ContractViolation("batch s3://raw/x broke", ref="s3://raw/x", report=report)
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, ContractViolationError)
    assert str(back) == "batch s3://raw/x broke"
    assert back.failed_rules == ["flights.distance.max"] and back.ref == "s3://raw/x"
