"""History files: files that each hold many partitions (a history dump in a drop folder, an S3
export), named by a source's `history:` glob, read once and split by the contract's partition
column into the rows of each partition asked for.

A row's partition is the key (`ml.partitions`) of its partition column's value: timestamps in
UTC (naive values are taken as UTC; text is read as ISO 8601). Rows of partitions not asked for
are left for the call that asks for them. A row whose partition column is missing or cannot be
read as a time makes the whole file unreadable (`UnreadableInput`, rule `no_partition_column`,
`missing_partition_value` or `bad_partition_value`, naming the file, the column and the first
line): its bytes are kept in quarantine by ingestion, nothing of it is ingested.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from ml import partitions
from ml.sources.errors import SourceError, UnreadableInput
from ml.sources.fetch import Fetched, fetch_history
from ml.sources.formats import parse
from ml.sources.limits import Limits
from ml.sources.read import SourceRows
from ml.sources.section import check_source, file_format

log = logging.getLogger(__name__)


def read_history(
    source: dict,
    column: str,
    granularity: str,
    keys: Iterable[str],
    columns: Iterable | None = None,
    *,
    na_values: Iterable[str] = (),
    limits: Limits | None = None,
) -> dict[str, SourceRows]:
    """The rows of each partition of `keys` found in the source's history files (a key with no
    row is left out), each with the files its rows came from; every file is read once."""
    check_source(source)
    if granularity == partitions.SNAPSHOT:
        raise SourceError("source history: a snapshot table is read whole, not split")
    if not source.get("history"):
        raise SourceError(f"source {source['kind']}: no `history` files declared")
    wanted = [partitions.normalize_key(k, granularity) for k in keys]
    columns = list(columns or ())
    limits = limits or Limits.of()
    found: dict[str, list[tuple[Fetched, pd.DataFrame]]] = {}
    for fetched in fetch_history(source, limits):
        fmt = file_format(source, fetched.name)
        df = parse(fetched, fmt, source, columns, na_values=na_values, limits=limits)
        for key, rows in split_rows(df, fetched, column, granularity, wanted).items():
            found.setdefault(key, []).append((fetched, rows))
    out = {}
    for key, parts in found.items():
        frames = [rows for _, rows in parts]
        df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        files = tuple(f for f, _ in parts)
        out[key] = SourceRows(df, files[0].location, files[0], files[1:])
    return out


def split_rows(
    df: pd.DataFrame, fetched: Fetched, column: str, granularity: str, keys: Iterable[str]
) -> dict[str, pd.DataFrame]:
    """The rows of `df` (parsed from `fetched`) of each partition of `keys`, in file order."""
    key_col = row_keys(df, fetched, column, granularity)
    wanted = set(keys)
    out = {
        str(key): rows.reset_index(drop=True)
        for key, rows in df.groupby(key_col, sort=True)
        if key in wanted
    }
    others = int((~key_col.isin(wanted)).sum())
    if others:
        log.info(
            "%s: %s row(s) of other partitions left for the run that asks for them",
            fetched.location,
            others,
        )
    return out


def row_keys(df: pd.DataFrame, fetched: Fetched, column: str, granularity: str) -> pd.Series:
    """Each row's partition key; `UnreadableInput` when a row has none."""

    def unreadable(rule: str, detail: str) -> UnreadableInput:
        return UnreadableInput(
            f"{fetched.location}: unreadable history file, rule {rule}: {detail}; a history file "
            f"is split by its partition column ({column!r}), every row needs a time in it",
            source=fetched.location,
            rule=rule,
            detail=detail,
            name=fetched.name,
            data=fetched.data,
        )

    if column not in df.columns:
        raise unreadable("no_partition_column", f"no column {column!r} ({list(df.columns)[:20]})")
    values = df[column]
    missing = values.isna()
    if missing.any():
        raise unreadable(
            "missing_partition_value",
            f"{int(missing.sum())} row(s) have no {column!r} value (first: row {_row(missing)})",
        )
    times = _times(values)
    bad = times.isna()
    if bad.any():
        first = values[bad].iloc[0]
        raise unreadable(
            "bad_partition_value",
            f"{int(bad.sum())} row(s) have a {column!r} value that is not a time (first: row "
            f"{_row(bad)}, {str(first)[:40]!r})",
        )
    return times.dt.strftime(partitions.KEY_FORMAT[granularity]).rename("__key__")


def _times(values: pd.Series) -> pd.Series:
    """Values as UTC timestamps (NaT where not a time)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values):
        return values.dt.tz_localize("UTC")
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    text = values.astype("string")
    return pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")


def _row(mask: pd.Series) -> int:
    """The 1-based data row of the first True (line = row + 1 in a CSV with a header)."""
    return int(mask.to_numpy().nonzero()[0][0]) + 1
