"""Fault injection on real parts (issue 13, item 8): a writer SIGKILLed mid-write then retried,
two attempts of one task at once, and the S3 endpoint unreachable mid-task behind a TCP proxy
the test pauses. Each case records its outcome in the suite's results table (`record_fault`,
see `tests.reliability.record`), from which the README's reliability section is made.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ml import commit, storage
from tests.conftest import pipeline_environment
from tests.integration.conftest import s3_server  # noqa: F401  (the real S3 API server)
from tests.reliability.pause import retry_action

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITION = "date=2024-06-01"
ROWS, PER_PART = 4_000, 500  # 8 parts: a kill lands between parts


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": range(ROWS), "value": [i * 0.5 for i in range(ROWS)]})


# A writer process: writes `_frame()` as a raw batch (ingest's idempotency key), or validates a
# raw batch; with KILL_AFTER_PARTS set it signals READY after that many parts and waits to die.
WRITER = """
import os, sys, time
import pandas as pd
import s3fs
from ml import commit, storage
from tests.reliability.test_faults import PARTITION, PER_PART, _frame

after, ready = int(os.environ.get("KILL_AFTER_PARTS", "0")), os.environ.get("READY", "")
if after:
    count = [0]
    def hook(real, target):
        def write(self, *a, **kw):
            out = real(self, *a, **kw)
            if "/part-" in str(a[target]):
                count[0] += 1
                if count[0] == after:
                    open(ready, "w").close()
                    time.sleep(120)  # SIGKILLed here, mid-write
            return out
        return write
    s3fs.S3FileSystem.pipe_file = hook(s3fs.S3FileSystem.pipe_file, 0)
    s3fs.S3FileSystem.copy = hook(s3fs.S3FileSystem.copy, 1)  # copy(source, target)
mode, dataset = sys.argv[1], sys.argv[2]
if mode == "raw":
    df = _frame()
    key = commit.idempotency_key(dataset, PARTITION, storage.content_hash(df), "")
    m = storage.write_batch(df, "raw", dataset, PARTITION, batch_id=key, rows_per_part=PER_PART)
else:
    from ml.validation.batch import validate_batch
    m = validate_batch(sys.argv[3], sys.argv[4]).manifest
print(m.ref)
"""


def _writer(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_mid_write(tmp_path, *args: str) -> None:
    ready = tmp_path / f"ready-{args[1]}"
    proc = _writer(*args, KILL_AFTER_PARTS="3", READY=str(ready))
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never reached its third part"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _run(*args: str) -> str:
    proc = _writer(*args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out.strip().splitlines()[-1]


def _shas(m: storage.Manifest) -> list[str]:
    fs = storage.filesystem()
    return [commit.hashlib.sha256(fs.cat_file(u[5:])).hexdigest() for u in m.part_urls]


def test_sigkill_of_the_raw_writer_mid_write_then_the_retry(s3_server, tmp_path, record_fault):  # noqa: F811
    _kill_mid_write(tmp_path, "raw", "killed")
    visible = storage.list_batches("raw", "killed")
    orphans = storage.filesystem().glob(f"raw/killed/{PARTITION}/*/*/part-*.parquet")
    retried = storage.read_manifest(_run("raw", "killed"))
    clean = storage.read_manifest(_run("raw", "clean"))
    same = _shas(retried) == _shas(clean)
    record_fault(
        case="sigkill raw writer mid-write, then retry",
        kind="sigkill",
        survived=not visible and same,
        rows_in=ROWS,
        rows_validated=retried.rows,
        duplicates=len(storage.list_batches("raw", "killed")) - 1,
    )
    assert orphans and not visible  # parts were written, and nothing was visible
    assert [b.ref for b in storage.list_batches("raw", "killed")] == [retried.ref]
    assert same and retried.rows == clean.rows == ROWS  # byte for byte a clean run


def test_sigkill_of_validate_mid_write_then_the_retry(s3_server, tmp_path, record_fault):  # noqa: F811
    contract = tmp_path / "vkill.yaml"
    contract.write_text(
        "dataset: vkill\nowner: t@example.org\ncolumns:\n  id: {type: int}\n"
        "  value: {type: float}\n"
    )
    with pipeline_environment({"MLPIPE_PII_SALT": "pepper"}):
        raw = storage.write_batch(_frame(), "raw", "vkill", PARTITION, rows_per_part=PER_PART)
        twin = storage.write_batch(
            _frame(), "raw", "vkill", "date=2024-06-02", rows_per_part=PER_PART
        )
        _kill_mid_write(tmp_path, "validate", "vkill", raw.ref, str(contract))
        target = storage.ref_in_zone(raw.ref, "validated")
        visible = storage.committed_in_zone([raw.ref], "validated")
        retried = storage.read_manifest(_run("validate", "vkill", raw.ref, str(contract)))
        clean = storage.read_manifest(_run("validate", "vkill", twin.ref, str(contract)))
    same = _shas(retried) == _shas(clean)
    record_fault(
        case="sigkill validate mid-write, then retry",
        kind="sigkill",
        survived=not visible and same,
        rows_in=ROWS,
        rows_validated=retried.rows,
    )
    assert not visible and retried.ref == target
    assert same and retried.rows == ROWS


def test_two_attempts_of_one_task_at_once_commit_one_batch(s3_server, record_fault):  # noqa: F811
    procs = [_writer("raw", "twice") for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out.strip().splitlines()[-1])
    batches = storage.list_batches("raw", "twice")
    record_fault(
        case="two attempts of one ingest at once",
        kind="concurrency",
        survived=len(batches) == 1,
        rows_in=ROWS,
        rows_validated=sum(b.rows for b in batches[:1]),
        duplicates=len(batches) - 1,
    )
    assert len(batches) == 1 and set(outs) == {batches[0].ref}
    assert len(storage.read_batch(batches[0])) == ROWS


class PausableProxy:
    """A TCP proxy to the S3 server that the test can pause: while paused, connections are
    refused and the open ones are cut."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.paused = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.paused.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self.paused.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    def pause(self) -> None:
        self.paused.set()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def resume(self) -> None:
        self.paused.clear()


def test_s3_unreachable_mid_task_then_the_retry_succeeds(s3_server, monkeypatch, record_fault):  # noqa: F811
    proxy = PausableProxy(int(s3_server.rsplit(":", 1)[1]))
    df = _frame()
    key = commit.idempotency_key("cut", PARTITION, storage.content_hash(df), "")
    real = commit.commit

    def cut_before_commit(fs, manifest, **kw):
        proxy.pause()  # the parts are written; the endpoint goes away before the manifest
        return real(fs, manifest, **kw)

    with pipeline_environment(
        {"S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}", "AWS_MAX_ATTEMPTS": "2"}
    ):
        monkeypatch.setattr(commit, "commit", cut_before_commit)
        with pytest.raises(Exception) as failed:
            storage.write_batch(df, "raw", "cut", PARTITION, batch_id=key, rows_per_part=PER_PART)
        monkeypatch.setattr(commit, "commit", real)
        proxy.resume()
        action = retry_action(failed.value)
        retried = storage.write_batch(
            df, "raw", "cut", PARTITION, batch_id=key, rows_per_part=PER_PART
        )
    batches = storage.list_batches("raw", "cut")
    record_fault(
        case="S3 endpoint unreachable before the commit, then the retry",
        kind="network",
        survived=action != "FAIL" and len(batches) == 1,
        rows_in=ROWS,
        rows_validated=retried.rows,
        duplicates=len(batches) - 1,
        note=f"{type(failed.value).__name__} -> retry policy {action}",
    )
    assert action != "FAIL", f"{failed.value!r} would not be retried"
    assert [b.ref for b in batches] == [retried.ref]
    assert len(storage.read_batch(retried)) == ROWS
