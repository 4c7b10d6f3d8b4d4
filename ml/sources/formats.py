"""Input bytes read as csv, parquet or JSON lines, typed from the contract's columns; bytes that
are not a valid file of their format raise `UnreadableInput` naming the rule they broke.

Columns are typed where that loses nothing: `timestamp` columns become UTC datetimes, integral
float `int` columns nullable ints, `string` columns of a CSV are read as text (leading zeros
kept), `bool` columns from true/false.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml.sources.errors import SourceError, UnreadableInput
from ml.sources.section import FORMATS

if TYPE_CHECKING:
    from ml.sources.fetch import Fetched

log = logging.getLogger(__name__)

Unreadable = Callable[[str, str], UnreadableInput]  # (rule, detail) -> the error to raise

_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def parse(
    fetched: Fetched, fmt: str, source: dict | None = None, columns: Iterable | None = None
) -> pd.DataFrame:
    """The rows in `fetched`, typed from the contract columns; `UnreadableInput` if there are none
    or the bytes are not a valid file of format `fmt`."""
    source = source or {}

    def unreadable(rule: str, detail: str) -> UnreadableInput:
        return UnreadableInput(
            f"{fetched.location}: unreadable {fmt} input, rule {rule}: {detail}",
            source=fetched.location,
            rule=rule,
            detail=detail,
            name=fetched.name,
            data=fetched.data,
        )

    if not fetched.data:
        raise unreadable("empty_file", "the file is empty (0 bytes)")
    types = {c.name: c.type for c in columns or ()}
    if fmt == "csv":
        df = _parse_csv(fetched.data, source.get("encoding", "utf-8"), types, unreadable)
    elif fmt == "jsonl":
        df = _parse_jsonl(fetched.data, source.get("encoding", "utf-8"), unreadable)
    elif fmt == "parquet":
        df = _parse_parquet(fetched.data, unreadable)
    else:
        raise SourceError(f"{fetched.location}: format {fmt!r} is not one of {list(FORMATS)}")
    if df.empty:
        raise unreadable(
            "header_only" if len(df.columns) else "no_rows",
            f"no data rows (columns: {list(df.columns)[:20]})",
        )
    return apply_types(df, types)


def _decode(data: bytes, encoding: str, unreadable: Unreadable) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        rule = "not_utf8" if encoding.replace("-", "").lower() == "utf8" else "bad_encoding"
        raise unreadable(
            rule, f"not valid {encoding} at byte {exc.start} (line {line}): {exc.reason}"
        ) from None


def _parse_csv(
    data: bytes, encoding: str, types: dict[str, str], unreadable: Unreadable
) -> pd.DataFrame:
    text = _decode(data, encoding, unreadable).removeprefix("\ufeff")
    # Every record must have the header's number of fields: a file cut short mid-row (or mid
    # quoted field) is truncated, not a row with missing values.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise unreadable("no_header", "the first line holds no column names")
        for record in reader:
            if record and len(record) != len(header):
                raise unreadable(
                    "csv_truncated" if len(record) < len(header) else "csv_malformed",
                    f"line {reader.line_num} has {len(record)} field(s), the header has "
                    f"{len(header)}",
                )
    except csv.Error as exc:
        raise unreadable("csv_malformed", f"line {reader.line_num}: {exc}") from None
    dtype = {name: "string" for name, kind in types.items() if kind == "string" and name in header}
    try:
        return pd.read_csv(io.StringIO(text), dtype=dtype or None)
    except (ValueError, pd.errors.ParserError) as exc:
        raise unreadable("csv_malformed", str(exc)) from None


def _parse_jsonl(data: bytes, encoding: str, unreadable: Unreadable) -> pd.DataFrame:
    text = _decode(data, encoding, unreadable).removeprefix("\ufeff")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise unreadable(
                "bad_json_line", f"line {number}: {exc.msg} (column {exc.colno})"
            ) from None
        if not isinstance(record, dict):
            raise unreadable(
                "bad_json_line",
                f"line {number}: a JSON object expected, got {type(record).__name__}",
            )
        records.append(record)
    return pd.DataFrame.from_records(records)


def _parse_parquet(data: bytes, unreadable: Unreadable) -> pd.DataFrame:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable("corrupt_parquet", f"{type(exc).__name__}: {exc}") from None
    return table.to_pandas()


def apply_types(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Type columns as the contract declares, only where no value changes or is lost.

    Anything that does not convert cleanly is left as it came: validation reports it.
    """
    for name, kind in types.items():
        if name not in df.columns:
            continue
        col = df[name]
        try:
            if kind == "timestamp":
                df[name] = _to_utc(col)
            elif kind == "int" and pd.api.types.is_float_dtype(col):
                values = col.dropna()
                if (values == values.round()).all():
                    df[name] = col.astype("Int64")
            elif kind == "bool" and not pd.api.types.is_bool_dtype(col):
                df[name] = _to_bool(col)
        except (ValueError, TypeError, OverflowError) as exc:
            log.info("column %s left as %s: not a clean %s (%s)", name, col.dtype, kind, exc)
    return df


def _to_utc(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(col):
        return col.dt.tz_localize("UTC")  # naive times are taken as UTC
    if pd.api.types.is_numeric_dtype(col):
        raise ValueError("numbers are not timestamps")
    return pd.to_datetime(col, utc=True, format="ISO8601")


def _to_bool(col: pd.Series) -> pd.Series:
    def one(v):
        if pd.isna(v):
            return pd.NA
        key = str(v).strip().lower()
        if key not in _BOOLS:
            raise ValueError(f"{v!r} is not a boolean")
        return _BOOLS[key]

    return col.map(one).astype("boolean")
