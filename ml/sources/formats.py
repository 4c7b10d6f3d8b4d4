"""Input bytes read as csv, parquet or JSON lines, typed from the contract's columns; bytes that
are not a valid file of their format raise `UnreadableInput` naming the rule they broke.

Columns are typed where that loses nothing: `timestamp` columns become UTC datetimes, integral
float `int` columns nullable ints, `string` columns of a CSV are read as text (leading zeros
kept), `bool` columns from true/false.

Missing values: an empty CSV field is missing, in every column type (CSV has no other way to
write one; a string column does not keep `""`); JSON `null` and parquet nulls are missing. Text
such as `NA`, `None`, `null`, `n/a` stays text unless the contract lists it in `na_values`
(applied to text cells of every format): pandas' own NA list is never used.

Nothing is coerced silently: duplicate or empty column names, a duplicated JSON key, nested
values (objects, lists), a column mixing text and numbers, an integer wider than 64 bits, a
parquet column of a type the contract cannot hold, or more rows than the bounds allow raise
`UnreadableInput` naming the column (or line) and the rule, so the bytes are quarantined.
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

from ml.errors import BadInputError
from ml.sources.errors import SourceError, UnreadableInput
from ml.sources.limits import Limits
from ml.sources.section import FORMATS

if TYPE_CHECKING:
    from ml.sources.fetch import Fetched

log = logging.getLogger(__name__)

Unreadable = Callable[[str, str], UnreadableInput]  # (rule, detail) -> the error to raise

_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def parse(
    fetched: Fetched,
    fmt: str,
    source: dict | None = None,
    columns: Iterable | None = None,
    *,
    na_values: Iterable[str] = (),
    limits: Limits | None = None,
) -> pd.DataFrame:
    """The rows in `fetched`, typed from the contract columns; `UnreadableInput` if there are none,
    the bytes are not a valid file of format `fmt`, a value cannot be stored as it is, or there
    are more rows than `limits` allow (default: settings)."""
    source = source or {}
    limits = limits or Limits.of()
    na = list(na_values)

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
    encoding = source.get("encoding", "utf-8")
    if fmt == "csv":
        df = _parse_csv(fetched.data, encoding, types, na, limits, unreadable)
    elif fmt == "jsonl":
        df = _parse_jsonl(fetched.data, encoding, limits, unreadable)
    elif fmt == "parquet":
        df = _parse_parquet(fetched.data, limits, unreadable)
    else:
        raise SourceError(f"{fetched.location}: format {fmt!r} is not one of {list(FORMATS)}")
    if df.empty:
        raise unreadable(
            "header_only" if len(df.columns) else "no_rows",
            f"no data rows (columns: {list(df.columns)[:20]})",
        )
    if fmt != "csv" and na:
        df = _na_text(df, na)
    check_values(df, types, unreadable)
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


# long: one pass over the records checks header, shape and the row bound before pandas parses
def _parse_csv(
    data: bytes,
    encoding: str,
    types: dict[str, str],
    na: list[str],
    limits: Limits,
    unreadable: Unreadable,
) -> pd.DataFrame:
    text = _decode(data, encoding, unreadable).removeprefix("\ufeff")
    # Every record must have the header's number of fields: a file cut short mid-row (or mid
    # quoted field) is truncated, not a row with missing values.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise unreadable("no_header", "the first line holds no column names")
        _check_names(header, unreadable)
        rows = 0
        for record in reader:
            rows += bool(record)
            if rows > limits.max_rows:
                raise unreadable(
                    "too_many_rows",
                    f"more than {limits.max_rows} rows (line {reader.line_num}); the bound is "
                    "settings.max_input_rows or the contract's limits.max_rows",
                )
            if record and len(record) != len(header):
                raise unreadable(
                    "csv_truncated" if len(record) < len(header) else "csv_malformed",
                    f"line {reader.line_num} has {len(record)} field(s), the header has "
                    f"{len(header)}",
                )
    except csv.Error as exc:
        raise unreadable("csv_malformed", f"line {reader.line_num}: {exc}") from None
    if types and not set(header) & set(types):
        raise unreadable(
            "no_header",
            f"no field of the first line names a declared column ({header[:10]}): a file "
            "without a header, or another dataset's file",
        )
    dtype = {name: "string" for name, kind in types.items() if kind == "string" and name in header}
    try:
        return pd.read_csv(
            io.StringIO(text), dtype=dtype or None, keep_default_na=False, na_values=["", *na]
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise unreadable("csv_malformed", str(exc)) from None


def _parse_jsonl(
    data: bytes, encoding: str, limits: Limits, unreadable: Unreadable
) -> pd.DataFrame:
    text = _decode(data, encoding, unreadable).removeprefix("\ufeff")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(records) >= limits.max_rows:
            raise unreadable(
                "too_many_rows",
                f"more than {limits.max_rows} rows (line {number}); the bound is "
                "settings.max_input_rows or the contract's limits.max_rows",
            )
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise unreadable("duplicate_key", f"line {number}: key {exc.key!r} twice") from None
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


def _parse_parquet(data: bytes, limits: Limits, unreadable: Unreadable) -> pd.DataFrame:
    """Rows and decoded size from the file's metadata, checked before anything is decoded;
    column types from its schema; then the rows (pandas metadata ignored: an index stored in
    the file stays a column, nothing is dropped)."""
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta = pf.metadata
        rows = meta.num_rows
        decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable("corrupt_parquet", f"{type(exc).__name__}: {exc}") from None
    if rows > limits.max_rows:
        raise unreadable(
            "too_many_rows",
            f"the parquet metadata declares {rows} rows, over the bound of {limits.max_rows} "
            "(settings.max_input_rows or the contract's limits.max_rows); not decoded",
        )
    if decoded > limits.max_decoded_bytes:
        raise unreadable(
            "too_large_decoded",
            f"the parquet metadata declares {decoded} bytes once decoded, over the bound of "
            f"{limits.max_decoded_bytes} (max_input_decoded_bytes / limits.max_decoded_bytes)",
        )
    _check_names([f.name for f in schema], unreadable)
    for f in schema:
        if not _storable_type(f.type):
            raise unreadable(
                "unsupported_type",
                f"column {f.name!r} is of parquet type {f.type}; only integers, floats, "
                "booleans, text, dates and timestamps can be held",
            )
    try:
        table = pf.read()
        if table.num_rows > limits.max_rows:  # the metadata lied
            raise unreadable("too_many_rows", f"{table.num_rows} rows decoded")
        return table.to_pandas(ignore_metadata=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable("corrupt_parquet", f"{type(exc).__name__}: {exc}") from None


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


class _DuplicateKey(BadInputError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object's pairs as a dict; a key given twice is an error (json keeps the last)."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _check_names(names: list, unreadable: Unreadable) -> None:
    """Column names must be non-empty and distinct (pandas would rename or drop them)."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise unreadable("empty_column_name", f"column {i + 1} has no name")
        if name in seen:
            raise unreadable("duplicate_column", f"column {name!r} appears twice")
        seen.add(name)


def _storable_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _storable_type(t.value_type)
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_null(t)
    )


def _na_text(df: pd.DataFrame, na: list[str]) -> pd.DataFrame:
    """Text cells equal to one of the contract's `na_values` become missing."""
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_string_dtype(col) or col.dtype == object:
            df[name] = col.mask(col.isin(na))
    return df


_INT64 = (-(2**63), 2**63 - 1)


def check_values(df: pd.DataFrame, types: dict[str, str], unreadable: Unreadable) -> None:
    """Every column must hold values parquet can store as one type: `UnreadableInput` names the
    first column that does not (nested values, mixed text and numbers, integers wider than 64
    bits) and the rule."""
    for name in df.columns:
        col = df[name]
        if col.dtype != object and not (
            types.get(name) == "int" and pd.api.types.is_string_dtype(col)
        ):
            continue
        values = col.dropna()
        kinds = {type(v) for v in values}
        nested = [k.__name__ for k in kinds if issubclass(k, dict | list | tuple | set)]
        if nested:
            raise unreadable(
                "nested_value", f"column {name!r} holds nested values ({', '.join(nested)})"
            )
        wide = _wide_int(values, types.get(name))
        if wide is not None:
            raise unreadable(
                "int_overflow", f"column {name!r}: {str(wide)[:40]} does not fit in 64 bits"
            )
        if kinds and col.dtype == object:
            try:
                pa.array(values.tolist())
            except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
                names = sorted(k.__name__ for k in kinds)
                raise unreadable(
                    "mixed_types", f"column {name!r} mixes {names} ({type(exc).__name__})"
                ) from None


def _wide_int(values: pd.Series, declared: str | None) -> object | None:
    """The first integer (or, in a declared int column, integer text) outside int64/uint64."""
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            n = v
        elif declared == "int" and isinstance(v, str) and v.strip().lstrip("+-").isdigit():
            n = int(v)
        else:
            continue
        if n < _INT64[0] or n > 2**64 - 1:
            return v
    return None
