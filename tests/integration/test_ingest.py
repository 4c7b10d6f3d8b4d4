"""Ingestion against a real S3 API server: drop folder, S3 prefix, HTTP; idempotence, supersedes,
crash safety, and unreadable input kept byte for byte in quarantine."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import threading
from collections import Counter
from datetime import date
from typing import ClassVar

import pandas as pd
import pytest

from ml import commit, contracts, ingest, storage
from ml.sources.errors import SourceError, SourceNotFound, TransientSourceError, UnreadableInput
from tests.conftest import pipeline_environment
from tests.orders_data import drop_orders, orders_csv, orders_day

pytestmark = pytest.mark.integration


@pytest.fixture
def drop(s3_server, tmp_path):
    with pipeline_environment({"MLPIPE_DROP_DIR": str(tmp_path)}):
        yield tmp_path


def _with_source(monkeypatch, source: dict) -> None:
    """The orders contract with another source section (as a contract file would declare it)."""
    real = contracts.load_contract("orders")
    patched = dataclasses.replace(real, raw={**real.raw, "source": source})
    monkeypatch.setattr(contracts, "load_contract", lambda name: patched)


def _drop_bytes(drop, name: str, data: bytes) -> None:
    (drop / "orders").mkdir(exist_ok=True)
    (drop / "orders" / name).write_bytes(data)


def test_drop_folder_ingest_is_idempotent_and_changed_content_supersedes(drop):
    day = date(2024, 3, 1)
    part = "date=2024-03-01"
    drop_orders(drop, day)
    first = ingest.ingest_partition("orders", day)
    assert first.new and first.rows == len(orders_day(day))

    again = ingest.ingest_partition("orders", "2024-03-01")
    assert again == dataclasses.replace(first, new=False)
    assert len(storage.list_batches("raw", "orders", part)) == 1  # no duplicate

    changed = orders_day(day).iloc[:-5]  # a corrected export, five orders fewer
    changed["created_at"] = changed["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    _drop_bytes(drop, "2024-03-01.csv", changed.to_csv(index=False).encode())
    second = ingest.ingest_partition("orders", day)
    assert second.new and second.rows == first.rows - 5
    batches = storage.list_batches("raw", "orders", part)
    assert [b.ref for b in batches] == [first.ref, second.ref]  # the old one is kept
    assert batches[1].extra["supersedes"] == first.ref
    assert storage.latest_batches("raw", "orders")[part].ref == second.ref
    assert batches[1].source.startswith("drop_folder:") and batches[1].contract_hash
    rows = storage.read_batch(batches[1])
    assert str(rows["created_at"].dt.tz) == "UTC"


def test_crash_mid_write_leaves_no_visible_batch(drop, monkeypatch):
    day = date(2024, 3, 2)
    part = "date=2024-03-02"
    drop_orders(drop, day)

    def crash(fs, manifest, **kw):
        raise RuntimeError("worker killed before the commit")

    with monkeypatch.context() as m:
        m.setattr(commit, "commit", crash)
        with pytest.raises(RuntimeError, match="worker killed"):
            ingest.ingest_partition("orders", day)
    fs = storage.filesystem()
    prefix = f"{storage.get_settings().bucket('raw')}/orders/{part}"
    fs.invalidate_cache(prefix)
    orphans = fs.glob(f"{prefix}/*/*/part-*.parquet")
    assert orphans  # the parts were written ...
    assert storage.list_batches("raw", "orders", part) == []  # ... and are not data
    assert part not in storage.latest_batches("raw", "orders")

    retry = ingest.ingest_partition("orders", day)
    assert retry.new
    batches = storage.list_batches("raw", "orders", part)
    assert [b.ref for b in batches] == [retry.ref]
    assert "supersedes" not in batches[0].extra
    # A retry writes a new attempt of the same batch (its id comes from the inputs).
    assert batches[0].attempt not in orphans[0] and batches[0].batch_id in orphans[0]


def test_missing_file_is_a_clear_error_and_quarantines_nothing(drop):
    with pytest.raises(SourceNotFound, match="nothing dropped yet"):
        ingest.ingest_partition("orders", date(2024, 3, 3))
    assert storage.list_batches("quarantine", "orders", "date=2024-03-03") == []
    assert storage.list_batches("raw", "orders", "date=2024-03-03") == []


def _parquet(day: date) -> bytes:
    buf = io.BytesIO()
    orders_day(day).to_parquet(buf, index=False)
    return buf.getvalue()


UNREADABLE = [
    ("2024-03-10.csv", b"", "empty_file"),
    ("2024-03-11.csv", orders_csv(date(2024, 3, 11)).split(b"\n", 1)[0] + b"\n", "header_only"),
    ("2024-03-12.csv", orders_csv(date(2024, 3, 12))[:-33], "csv_truncated"),
    ("2024-03-13.csv", orders_csv(date(2024, 3, 13)).replace(b"web", b"w\xe9b", 1), "not_utf8"),
    ("2024-03-14.parquet", _parquet(date(2024, 3, 14))[:-64], "corrupt_parquet"),
    ("2024-03-15.jsonl", b'{"order_id": "ORD-20240315-00001"}\n{"order_id": \n', "bad_json_line"),
]


@pytest.mark.parametrize(("name", "data", "rule"), UNREADABLE, ids=[r for *_, r in UNREADABLE])
def test_unreadable_input_is_quarantined_byte_for_byte(drop, monkeypatch, name, data, rule):
    day = date.fromisoformat(name[:10])
    part = ingest.partition_name(day)
    ext = name[10:]
    _with_source(monkeypatch, {"kind": "drop_folder", "path": "orders", "pattern": "{date}" + ext})
    _drop_bytes(drop, name, data)

    with pytest.raises(UnreadableInput) as info:
        ingest.ingest_partition("orders", day)
    exc = info.value
    held = storage.list_batches("quarantine", "orders", part)
    assert len(held) == 1
    manifest = held[0]
    # The message names the source, the rule broken and the quarantine path.
    assert str(drop / "orders" / name) in str(exc)
    assert rule in str(exc) and manifest.ref in str(exc)
    assert exc.rule == rule and exc.quarantine_ref == manifest.ref
    # Nothing half-ingested.
    assert storage.list_batches("raw", "orders", part) == []

    fs = storage.filesystem()
    stored = fs.cat_file(f"{manifest.prefix}/{name}")
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    assert stored == data
    reason = storage.read_json(f"{manifest.ref}/_reason.json")
    assert reason["reason"] == rule
    assert reason["sha256"] == hashlib.sha256(data).hexdigest()
    assert reason["bytes"] == len(data)
    assert reason["source"] == f"drop_folder:{drop / 'orders' / name}"
    assert reason["error"]
    assert manifest.extra["unreadable"] is True and manifest.rows == 0
    assert manifest.extra["sha256"] == reason["sha256"]

    # The same bad bytes again: the same quarantine batch, no second copy.
    with pytest.raises(UnreadableInput):
        ingest.ingest_partition("orders", day)
    assert [m.ref for m in storage.list_batches("quarantine", "orders", part)] == [manifest.ref]


def test_s3_prefix_source(drop, monkeypatch):
    fs = storage.filesystem()
    client = storage.minio_client()
    if not client.bucket_exists("landing"):
        client.make_bucket("landing")
    _with_source(
        monkeypatch,
        {"kind": "s3", "url": "s3://landing/shop/orders/", "pattern": "{year}/{date}.parquet"},
    )
    day = date(2024, 4, 1)
    fs.pipe_file("landing/shop/orders/2024/2024-04-01.parquet", _parquet(day))
    got = ingest.ingest_partition("orders", day)
    assert got.new and got.rows == len(orders_day(day))
    batch = storage.read_manifest(got.ref)
    assert batch.source == "s3://landing/shop/orders/2024/2024-04-01.parquet"
    assert ingest.ingest_partition("orders", day).new is False

    with pytest.raises(SourceNotFound, match="no object s3://landing"):
        ingest.ingest_partition("orders", date(2024, 4, 2))
    fs.pipe_file("landing/shop/orders/2024/2024-04-03.parquet", b"not parquet")
    with pytest.raises(UnreadableInput, match="corrupt_parquet") as info:
        ingest.ingest_partition("orders", date(2024, 4, 3))
    assert fs.cat_file(f"{info.value.quarantine_ref.removeprefix('s3://')}/2024-04-03.parquet") == (
        b"not parquet"
    )


class _Shop(http.server.BaseHTTPRequestHandler):
    """Serves `files`; answers 503 to the first `flaky[path]` requests of a path."""

    files: ClassVar[dict[str, bytes]] = {}
    flaky: ClassVar[Counter] = Counter()
    hits: ClassVar[Counter] = Counter()

    def do_GET(self):
        self.hits[self.path] += 1
        if self.path.startswith("/forbidden"):
            self.send_error(403)
            return
        if self.flaky[self.path] > 0:
            self.flaky[self.path] -= 1
            self.send_error(503, "busy")
            return
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def shop():
    """The shop's export server on loopback, which HTTP sources may reach only when allowed by
    name (settings.http_allowed_private_hosts)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Shop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Shop.files, _Shop.flaky, _Shop.hits = {}, Counter(), Counter()
    try:
        with pipeline_environment({"MLPIPE_HTTP_ALLOWED_PRIVATE_HOSTS": '["127.0.0.1"]'}):
            yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_source_retries_transient_errors_only(drop, monkeypatch, shop):
    _with_source(
        monkeypatch,
        {"kind": "http", "url": f"{shop}/export/{{date}}.csv", "timeout": 5, "backoff": 0.05},
    )
    day = date(2024, 5, 1)
    _Shop.files["/export/2024-05-01.csv"] = orders_csv(day)
    _Shop.flaky["/export/2024-05-01.csv"] = 2  # two 503s, then the file
    got = ingest.ingest_partition("orders", day)
    assert got.new and got.rows == len(orders_day(day))
    assert _Shop.hits["/export/2024-05-01.csv"] == 3
    assert storage.read_manifest(got.ref).source == f"{shop}/export/2024-05-01.csv"

    # Not published yet: one request, a clear error, nothing quarantined.
    with pytest.raises(SourceNotFound, match="answered 404"):
        ingest.ingest_partition("orders", date(2024, 5, 2))
    assert _Shop.hits["/export/2024-05-02.csv"] == 1

    # Always busy: the retries run out, and the error says it is transient.
    _Shop.files["/export/2024-05-03.csv"] = orders_csv(date(2024, 5, 3))
    _Shop.flaky["/export/2024-05-03.csv"] = 100
    with pytest.raises(TransientSourceError, match="HTTP 503"):
        ingest.ingest_partition("orders", date(2024, 5, 3))
    assert _Shop.hits["/export/2024-05-03.csv"] == 4  # 1 + 3 retries

    # Unreadable bytes over HTTP are quarantined like any other.
    _Shop.files["/export/2024-05-04.csv"] = b"order_id,amount\n"
    with pytest.raises(UnreadableInput, match="header_only"):
        ingest.ingest_partition("orders", date(2024, 5, 4))
    assert _Shop.hits["/export/2024-05-04.csv"] == 1


def test_http_client_errors_are_not_retried(drop, monkeypatch, shop):
    _with_source(monkeypatch, {"kind": "http", "url": f"{shop}/forbidden/{{date}}.csv"})
    with pytest.raises(SourceError, match="HTTP 403") as info:
        ingest.ingest_partition("orders", date(2024, 5, 5))
    assert not isinstance(info.value, TransientSourceError)
    assert _Shop.hits["/forbidden/2024-05-05.csv"] == 1


def test_unreachable_http_server_is_transient(drop, monkeypatch):
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/{{date}}.csv"
    _with_source(monkeypatch, {"kind": "http", "url": url, "retries": 1, "backoff": 0.01})
    allowed = pipeline_environment({"MLPIPE_HTTP_ALLOWED_PRIVATE_HOSTS": '["127.0.0.1"]'})
    with allowed, pytest.raises(TransientSourceError, match="ConnectionError"):
        ingest.ingest_partition("orders", date(2024, 5, 6))


def test_unreadable_input_can_be_shown_and_dropped_but_not_released(drop):
    from ml import quarantine

    _drop_bytes(drop, "2024-03-20.csv", b"")
    with pytest.raises(UnreadableInput) as info:
        ingest.ingest_partition("orders", date(2024, 3, 20))
    ref = info.value.quarantine_ref
    shown = quarantine.summary(ref)
    assert shown["unreadable"] is True and shown["reason"] == "empty_file"
    with pytest.raises(quarantine.QuarantineError, match="could not be read"):
        quarantine.release(ref, by="tester")
    quarantine.drop(ref, by="tester", reason="empty export, resent tomorrow")
    assert storage.filesystem().exists(f"{ref.removeprefix('s3://')}/_dropped.json")
    assert storage.filesystem().exists(f"{ref.removeprefix('s3://')}/2024-03-20.csv")  # kept


# History files: one file holding many partitions, split at ingest (`source.history`).

HISTORY = {"kind": "drop_folder", "path": "orders", "history": "history/*.csv", "format": "csv"}


def _history_csv(drop, days: list[str], name: str = "export.csv", mangle=None) -> bytes:
    frame = pd.concat([orders_day(date.fromisoformat(d)) for d in days], ignore_index=True)
    frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if mangle:
        frame = mangle(frame)
    data = frame.to_csv(index=False).encode()
    (drop / "orders" / "history").mkdir(parents=True, exist_ok=True)
    (drop / "orders" / "history" / name).write_bytes(data)
    return data


def test_a_history_file_of_60_days_becomes_60_committed_batches(drop, monkeypatch):
    from ml.sources import history

    _with_source(monkeypatch, HISTORY)
    days = ingest.days_between("2023-01-01", "2023-03-01")
    assert len(days) == 60
    data = _history_csv(drop, days)
    reads = Counter()
    real_fetch = history.fetch_history
    monkeypatch.setattr(
        history, "fetch_history", lambda *a, **k: reads.update(["read"]) or real_fetch(*a, **k)
    )

    keys = ingest.plan_partitions("orders", days[0], days[-1])
    assert keys == days
    outcomes = ingest.ingest_partitions("orders", keys)
    assert reads["read"] == 1  # the file is read once for the whole call
    assert [o.key for o in outcomes] == days
    assert all(o.ok and o.result.new and o.error is None for o in outcomes)
    latest = storage.latest_batches("raw", "orders")
    for day, outcome in zip(days, outcomes, strict=True):
        assert outcome.result.rows == len(orders_day(date.fromisoformat(day)))
        assert latest[f"date={day}"].ref == outcome.result.ref
    one = storage.read_manifest(outcomes[40].result.ref)
    assert one.extra["source_bytes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert one.source.endswith("history/export.csv")
    rows = storage.read_batch(one)
    assert (rows["created_at"].dt.strftime("%Y-%m-%d") == days[40]).all()
    assert storage.filesystem().cat_file(one.extra["source_bytes"]["url"]) == data  # raw is raw

    again = ingest.ingest_partitions("orders", keys)  # the same history again: nothing new
    assert [o.result for o in again] == [dataclasses.replace(o.result, new=False) for o in outcomes]
    assert all(len(storage.list_batches("raw", "orders", f"date={d}")) == 1 for d in days)


def test_a_history_call_takes_only_its_partitions(drop, monkeypatch):
    _with_source(monkeypatch, HISTORY)
    days = ingest.days_between("2023-04-01", "2023-04-05")
    _history_csv(drop, days[:3], "part-1.csv")
    _history_csv(drop, days[3:], "part-2.csv")
    outcomes = ingest.ingest_partitions("orders", ["2023-04-02", "2023-04-04", "2023-04-09"])
    assert [o.ok for o in outcomes] == [True, True, False]
    assert outcomes[1].result.rows == len(orders_day(date(2023, 4, 4)))
    assert storage.read_manifest(outcomes[1].result.ref).source.endswith("part-2.csv")
    # No row of the history falls in the 9th: not there yet, worth another try later.
    assert outcomes[2].error_type == "ml.sources.errors.SourceNotFound"
    assert outcomes[2].retryable and "2023-04-09" in outcomes[2].error
    for day in ("2023-04-01", "2023-04-03", "2023-04-05"):  # in the files, not asked for
        assert storage.list_batches("raw", "orders", f"date={day}") == []


def test_history_rows_without_a_time_are_refused_and_kept(drop, monkeypatch):
    _with_source(monkeypatch, HISTORY)
    days = ingest.days_between("2023-05-01", "2023-05-03")

    def mangle(frame):
        frame.loc[7, "created_at"] = "yesterday"
        return frame

    data = _history_csv(drop, days, mangle=mangle)
    outcomes = ingest.ingest_partitions("orders", days)
    assert not any(o.ok for o in outcomes)
    assert {o.error_type for o in outcomes} == {"ml.sources.errors.UnreadableInput"}
    assert not any(o.retryable for o in outcomes)
    error = outcomes[0].error
    assert "bad_partition_value" in error and "created_at" in error and "export.csv" in error
    assert "'yesterday'" in error
    for day in days:
        assert storage.list_batches("raw", "orders", f"date={day}") == []
    held = storage.list_batches("quarantine", "orders", f"date={days[0]}")
    assert len(held) == 1 and held[0].ref in error  # kept once, byte for byte
    assert storage.filesystem().cat_file(f"{held[0].prefix}/export.csv") == data


def test_one_failing_partition_does_not_stop_the_others(drop, monkeypatch):
    import json

    for day in ("2023-06-01", "2023-06-03"):
        drop_orders(drop, date.fromisoformat(day))
    _drop_bytes(drop, "2023-06-04.csv", b"")  # unreadable: quarantined
    keys = ["2023-06-01", "2023-06-02", "2023-06-31", "2023-06-04", date(2023, 6, 3)]
    outcomes = ingest.ingest_partitions("orders", keys)
    assert [o.key for o in outcomes] == [
        "2023-06-01",
        "2023-06-02",
        "2023-06-31",
        "2023-06-04",
        "2023-06-03",
    ]
    assert [o.ok for o in outcomes] == [True, False, False, False, True]
    missing, bad_key, unreadable = outcomes[1:4]
    assert (missing.error_type, missing.retryable) == ("ml.sources.errors.SourceNotFound", True)
    assert (bad_key.error_type, bad_key.retryable) == ("ml.partitions.PartitionKeyError", False)
    assert unreadable.error_type == "ml.sources.errors.UnreadableInput"
    assert not unreadable.retryable and "empty_file" in unreadable.error
    assert "orders/date=2023-06-04/" in unreadable.error  # where the bytes are kept
    sent = json.loads(json.dumps([o.to_dict() for o in outcomes]))  # the XCom form
    assert sent[0]["result"]["ref"] == outcomes[0].result.ref and sent[1]["result"] is None
    assert set(sent[1]) == {"key", "result", "error", "error_type", "retryable"}
