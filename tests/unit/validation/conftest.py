"""Fixtures of the validation unit tests: the flights contract, a day of flights, a toy contract."""

from __future__ import annotations

import pandas as pd
import pytest

from ml.contracts import load_contract
from tests.unit.validation._data import DATA, TOY_CONTRACT


@pytest.fixture(scope="module")
def flights():
    return load_contract("flights")


@pytest.fixture(scope="module")
def flights_day_all() -> pd.DataFrame:
    """The last 300 departures of 2013-01-01 (the evening: fresh), typed as ingestion types them."""
    df = pd.read_csv(DATA / "flights.csv.zip", nrows=1000)
    df = df[(df["month"] == 1) & (df["day"] == 1)].tail(300).reset_index(drop=True)
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    return df


@pytest.fixture
def day(flights_day_all) -> pd.DataFrame:
    return flights_day_all.copy()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("contracts") / "toy.yaml"
    path.write_text(TOY_CONTRACT)
    return load_contract(path)
