"""Real nycflights13 rows for the feature tests: three days joined to their reference tables
(`joined`), and five days (`five_days_joined`)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from ml import contracts
from ml.features import joins
from ml.sources.nycflights13 import nycflights13_rows, nycflights13_table

DAYS = [date(2013, 1, d) for d in range(1, 4)]


@pytest.fixture(scope="package")
def contract():
    return contracts.load_contract("flights")


@pytest.fixture(scope="package")
def tables():
    return {
        "flights": pd.concat([nycflights13_rows("flights", d) for d in DAYS]),
        "weather": pd.concat([nycflights13_rows("weather", d) for d in DAYS]),
        "planes": nycflights13_table("planes"),
        "airports": nycflights13_table("airports"),
    }


@pytest.fixture(scope="package")
def joined(tables, contract):
    refs = {k: v for k, v in tables.items() if k != "flights"}
    return joins.join_references(tables["flights"].reset_index(drop=True), refs, contract)


@pytest.fixture(scope="package")
def five_days_joined(contract):
    """Five real days of flights joined to the hourly weather at the origin."""
    days = [date(2013, 1, d) for d in range(1, 6)]
    flights = pd.concat([nycflights13_rows("flights", d) for d in days], ignore_index=True)
    weather = pd.concat([nycflights13_rows("weather", d) for d in days], ignore_index=True)
    lookups = {t: nycflights13_table(t) for t in ("planes", "airports")}
    return joins.join_references(flights, {"weather": weather, **lookups}, contract)
