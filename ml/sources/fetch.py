"""The bytes of one day's input as delivered, before any parsing: from a drop folder, an S3
prefix or an HTTP URL (transient HTTP errors retried with backoff)."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

import requests

from ml import storage
from ml.settings import get_settings
from ml.sources.errors import SourceError, SourceNotFound, TransientSourceError
from ml.sources.section import check_source, expand

log = logging.getLogger(__name__)

TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Fetched:
    """The bytes of one day's input as delivered, before any parsing."""

    name: str  # the original file name
    data: bytes
    location: str  # where it came from (path or URL), for messages and manifests

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


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
