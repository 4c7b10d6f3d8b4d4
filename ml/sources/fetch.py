"""The bytes of one partition's input as delivered, before any parsing: from a drop folder, an
S3 prefix or an HTTP URL, within the input's bounds (`ml.sources.limits`); or the history files
of a source (`history:`, files that hold many partitions: `fetch_history`).

HTTP: transient errors are retried with backoff; each try has a total deadline (`timeout`, the
whole fetch, body included: a server that trickles bytes is cut off); redirects are followed by
hand, only to the URL's own host (or `settings.http_redirect_hosts`); a host that resolves to a
loopback, private, link-local or reserved address is refused unless it is in
`settings.http_allowed_private_hosts`. The final URL is recorded (`Fetched.location`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from datetime import date
from urllib.parse import urljoin, urlsplit

import requests

from ml import storage
from ml.settings import Settings, get_settings
from ml.sources.errors import InputRefused, SourceError, SourceNotFound, TransientSourceError
from ml.sources.limits import Limits
from ml.sources.section import check_source, expand

log = logging.getLogger(__name__)

TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
MAX_REDIRECTS = 5
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    """The bytes of one day's input as delivered, before any parsing."""

    name: str  # the original file name
    data: bytes
    location: str  # where it came from (path, or the final URL after redirects)
    requested: str = ""  # the URL asked for, when redirects led elsewhere

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def fetch(source: dict, day: date, limits: Limits | None = None) -> Fetched:
    """The raw bytes of the day's file, object or URL, within `limits` (default: settings)."""
    kind = check_source(source)["kind"]
    limits = limits or Limits.of()
    if kind == "drop_folder":
        return _fetch_drop_folder(source, day, limits)
    if kind == "s3":
        return _fetch_s3(source, day, limits)
    if kind == "http":
        return _fetch_http(source, day, limits)
    raise SourceError(f"source kind {kind!r} delivers rows, not files")


def fetch_history(source: dict, limits: Limits | None = None) -> list[Fetched]:
    """The bytes of every history file of the source (`history:` glob), in name order, each
    within `limits`; `SourceNotFound` when none matches."""
    kind = check_source(source)["kind"]
    limits = limits or Limits.of()
    if kind == "drop_folder":
        got = _history_drop_folder(source, limits)
    elif kind == "s3":
        got = _history_s3(source, limits)
    else:
        raise SourceError(f"source {kind}: no `history` files (drop_folder and s3 only)")
    if not got:
        raise SourceNotFound(
            f"source {kind}: no history file matches {source['history']!r} (nothing delivered yet)"
        )
    return got


def _history_drop_folder(source: dict, limits: Limits) -> list[Fetched]:
    root = get_settings().drop_path
    folder = (root / str(source.get("path", ""))).resolve()
    got = []
    for path in sorted(p.resolve() for p in folder.glob(str(source["history"]))):
        if not path.is_relative_to(root):
            raise SourceError(f"source drop_folder: {path} is outside the drop folder {root}")
        if not path.is_file():
            continue
        where = f"drop_folder:{path}"
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise _too_large(where, size, limits, "the history file holds")
        got.append(Fetched(path.name, path.read_bytes(), where))
    return got


def _history_s3(source: dict, limits: Limits) -> list[Fetched]:
    prefix = str(source["url"]).removeprefix("s3://").rstrip("/")
    fs = storage.filesystem()
    got = []
    try:
        fs.invalidate_cache(prefix)
        found = fs.glob(f"{prefix}/{source['history']}", detail=True)
        for key in sorted(found):
            size = found[key].get("size") or 0
            if found[key].get("type") == "directory":
                continue
            if size > limits.max_bytes:
                raise _too_large(f"s3://{key}", size, limits, "the history object holds")
            got.append(Fetched(key.rsplit("/", 1)[-1], fs.cat_file(key), f"s3://{key}"))
    except PermissionError as exc:
        raise SourceError(f"source s3: access to s3://{prefix} denied: {exc}") from exc
    except (InputRefused, SourceError):
        raise
    except Exception as exc:  # endpoint down, time-out, throttling: try again later
        raise TransientSourceError(f"source s3: cannot read s3://{prefix}: {exc!r}") from exc
    return got


def _too_large(where: str, size: int, limits: Limits, how: str) -> InputRefused:
    return InputRefused(
        f"{where}: {how} {size} bytes, over the limit of {limits.max_bytes} bytes per input "
        "(settings.max_input_bytes or the contract's limits.max_bytes); refused, nothing read",
        source=where,
        rule="too_large",
    )


def _fetch_drop_folder(source: dict, day: date, limits: Limits) -> Fetched:
    root = get_settings().drop_path
    folder = (root / str(source.get("path", ""))).resolve()
    path = (folder / expand(source["pattern"], day)).resolve()
    if not path.is_relative_to(root):
        raise SourceError(f"source drop_folder: {path} is outside the drop folder {root}")
    where = f"drop_folder:{path}"
    try:
        size = path.stat().st_size
        if size > limits.max_bytes and path.is_file():
            raise _too_large(where, size, limits, "the file holds")
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceNotFound(
            f"source drop_folder: no file {path} for {day.isoformat()} (nothing dropped yet)"
        ) from None
    except IsADirectoryError:
        raise SourceError(f"source drop_folder: {path} is a folder, not a file") from None
    return Fetched(path.name, data, where)


def _fetch_s3(source: dict, day: date, limits: Limits) -> Fetched:
    prefix = str(source["url"]).removeprefix("s3://").rstrip("/")
    key = f"{prefix}/{expand(source['pattern'], day)}"
    url = f"s3://{key}"
    fs = storage.filesystem()
    try:
        fs.invalidate_cache(key.rsplit("/", 1)[0])
        size = fs.info(key).get("size") or 0
        if size > limits.max_bytes:
            raise _too_large(url, size, limits, "the object holds")
        data = fs.cat_file(key)
    except FileNotFoundError:
        raise SourceNotFound(
            f"source s3: no object {url} for {day.isoformat()} (nothing delivered yet)"
        ) from None
    except PermissionError as exc:
        raise SourceError(f"source s3: access to {url} denied: {exc}") from exc
    except InputRefused:
        raise
    except Exception as exc:  # endpoint down, time-out, throttling: try again later
        raise TransientSourceError(f"source s3: cannot read {url}: {exc!r}") from exc
    return Fetched(key.rsplit("/", 1)[-1], data, url)


class _Retry(TransientSourceError):
    """A transient problem of one HTTP try (the message says which)."""


def _fetch_http(source: dict, day: date, limits: Limits) -> Fetched:
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
            return _http_try(url, name, day, timeout, limits)
        except _Retry as exc:
            problem = str(exc)
        log.warning("source http: %s: %s (try %s of %s)", url, problem, attempt + 1, retries + 1)
    raise TransientSourceError(f"source http: {url}: {problem} after {retries + 1} tries")


def _http_try(url: str, name: str, day: date, timeout: float, limits: Limits) -> Fetched:
    """One try: redirects followed by hand (each hop checked), the body read within the
    deadline and the byte bound."""
    s = get_settings()
    deadline = time.monotonic() + timeout
    current = url
    with requests.Session() as session:
        for _ in range(MAX_REDIRECTS + 1):
            check_http_target(current, url, s)
            remaining = _remaining(deadline, timeout)
            try:
                response = session.get(
                    current,
                    stream=True,
                    allow_redirects=False,
                    timeout=(min(remaining, 10.0), remaining),
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Retry(f"{type(exc).__name__}: {exc}") from None
            with response:
                if response.is_redirect:
                    current = urljoin(current, response.headers["Location"])
                    continue
                _check_status(response, current, day)
                data = _read_body(response, current, deadline, timeout, limits)
            return Fetched(name, data, current, requested=url if current != url else "")
    raise InputRefused(
        f"source http: {url}: more than {MAX_REDIRECTS} redirects; refused",
        source=url,
        rule="too_many_redirects",
    )


def _remaining(deadline: float, timeout: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Retry(f"the fetch took longer than its deadline of {timeout:g} s (slow server)")
    return remaining


def _check_status(response: requests.Response, url: str, day: date) -> None:
    code = response.status_code
    if code in (404, 410):
        raise SourceNotFound(
            f"source http: {url} answered {code} for {day.isoformat()} (nothing published yet)"
        )
    if code in TRANSIENT_HTTP:
        raise _Retry(f"HTTP {code} {response.reason}")
    if code >= 400:
        raise SourceError(f"source http: {url} answered HTTP {code} {response.reason}")


def _read_body(
    response: requests.Response, url: str, deadline: float, timeout: float, limits: Limits
) -> bytes:
    """The body, refused at once when `Content-Length` is over the bound, counted (after
    decompression) while streaming otherwise; every read waits at most until the deadline."""
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) > limits.max_bytes:
        raise _too_large(url, int(length), limits, "Content-Length announces")
    raw = response.raw
    chunks, total = [], 0
    while True:
        remaining = _remaining(deadline, timeout)
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(remaining)
        try:
            chunk = raw.read1(CHUNK, decode_content=True)
        except Exception as exc:  # time-out, reset, bad chunking or encoding: try again
            raise _Retry(f"reading the body: {type(exc).__name__}: {exc}") from None
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_large(url, total, limits, "the body (decoded) passed")
        chunks.append(chunk)
    return b"".join(chunks)


def check_http_target(url: str, first: str, settings: Settings | None = None) -> None:
    """`InputRefused` unless `url` may be fetched: http(s), the first URL's host or one of
    `http_redirect_hosts`, and an address that is public unless the host is one of
    `http_allowed_private_hosts`."""
    s = settings or get_settings()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise InputRefused(
            f"source http: {first} redirected to {url}: only http(s) is followed; refused",
            source=first,
            rule="redirect_scheme",
        )
    host = parts.hostname or ""
    if host != urlsplit(first).hostname and host not in s.http_redirect_hosts:
        raise InputRefused(
            f"source http: {first} redirected to another host ({url}); refused (allow it in "
            "settings.http_redirect_hosts, MLPIPE_HTTP_REDIRECT_HOSTS)",
            source=first,
            rule="redirect_other_host",
        )
    if host in s.http_allowed_private_hosts:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise _Retry(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast:
            raise InputRefused(
                f"source http: {url}: host {host!r} resolves to {ip}, a loopback, private or "
                "reserved address; refused (allow the host in settings.http_allowed_private_hosts,"
                " MLPIPE_HTTP_ALLOWED_PRIVATE_HOSTS)",
                source=url,
                rule="private_address",
            )
