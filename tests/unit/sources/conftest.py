"""Sources without servers: a temporary drop folder and the orders contract."""

from __future__ import annotations

import pytest

from ml import contracts
from tests.conftest import pipeline_environment


@pytest.fixture
def drop(tmp_path):
    with pipeline_environment({"MLPIPE_DROP_DIR": str(tmp_path)}):
        yield tmp_path


@pytest.fixture(scope="module")
def orders():
    return contracts.load_contract("orders")
