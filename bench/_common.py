"""Helpers shared by the benchmarks: timing, the result line, a local S3 API server, and a
sampler of the peak memory of worker processes.

Every bench prints a small table and, as its last line, `<name>: ratio=<x.xx> goal=<g> met=<yes|no>`
(`result_line`), so a script can read the verdict from the last line alone.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# --- timing -----------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock seconds of each run, and the result of the last one."""

    times: list[float]
    result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def rate(self, items: int) -> float:
        """Items per second at the median time."""
        return items / self.median if self.median > 0 else float("inf")


def time_runs(
    fn: Callable[[], Any], repeat: int, *, before: Callable[[], Any] | None = None
) -> Timing:
    """Run `fn` `repeat` times (`before` untimed ahead of each run) and time each run."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    times = []
    result = None
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return Timing(times, result)


def result_line(name: str, ratio: float, goal: float) -> str:
    """The last line of a bench: `name: ratio=1.23 goal=1.6 met=no`."""
    met = "yes" if ratio >= goal else "no"
    return f"{name}: ratio={ratio:.2f} goal={goal:g} met={met}"


def print_result(name: str, ratio: float, goal: float) -> str:
    line = result_line(name, ratio, goal)
    print(line, flush=True)
    return line


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; numbers are right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = []
        for i, v in enumerate(row):
            numeric = n > 0 and isinstance(rows[n - 1][i], int | float)
            parts.append(v.rjust(widths[i]) if numeric else v.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def quiet_dask() -> None:
    """Keep Dask's warnings and informational logs off the bench's output (its last line is
    the verdict), and write stdout line by line so the table is not interleaved with stderr."""
    import logging
    import warnings

    import distributed  # noqa: F401  (its import configures logging: set levels after it)

    warnings.filterwarnings("ignore", category=UserWarning, module=r"dask\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"dask\..*")
    for name in ("distributed", "distributed.shuffle"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)


# --- a local S3 API server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_env(prefix: str) -> dict[str, str]:
    """The environment of a local stack of its own for a benchmark: a fresh state folder named
    `prefix`, every service on a free loopback port, no re-parsing of the DAG files."""
    return {
        "MLPIPE_STATE_DIR": tempfile.mkdtemp(prefix=prefix),
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{free_port()}",
        "MLPIPE_AIRFLOW_API_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    }


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    """Wait until `url` answers (any status below 500); fail early if `proc` exits."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it answered")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not answering at {url} after {timeout}s")


def stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a process started with `start_new_session=True`, and its children."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables the pipeline reads, forget cached settings and S3 clients,
    and put everything back on exit."""
    import s3fs

    from ml import settings
    from ml.tracking import environ

    def forget() -> None:
        settings.reset_settings()
        s3fs.S3FileSystem.clear_instance_cache()

    try:
        with environ(values):
            forget()
            yield
    finally:
        forget()  # after the old values are back


@contextmanager
def s3_server(log_path: str | Path | None = None) -> Iterator[str]:
    """A moto S3 API server process on a free loopback port, with the pipeline's buckets.

    Inside the block, `S3_ENDPOINT_URL` and AWS keys point at it (and settings are re-read), so
    Dask workers started inside inherit them. Yields the endpoint URL; stops the server after.
    """
    from ml.dev.stack.services import moto_server_argv  # deferred: conftest imports this module

    port = free_port()
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        moto_server_argv("127.0.0.1", port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(endpoint, proc, "S3 server")
        with environment(
            {"S3_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint, **S3_KEYS}
        ):
            from ml import storage

            storage.ensure_buckets()
            yield endpoint
    finally:
        stop_process_group(proc)
        log.close()


@contextmanager
def mlflow_server(
    state: str | Path, artifacts: str = "s3://mlflow/artifacts", timeout: float = 120
) -> Iterator[str]:
    """A real MLflow tracking server process (SQLite in `state`, artifacts proxied to
    `artifacts` on the S3 endpoint of the environment) on a free loopback port.

    Inside the block `MLFLOW_TRACKING_URI` points at it; on a start-up failure its log tail is
    in the error. The job runner (huey consumers) is off, as in the local stack.
    """
    from ml.dev.stack.services import (  # deferred: conftest imports this module
        MLFLOW_SERVER_ENV,
        mlflow_server_argv,
    )

    state = Path(state)
    port = free_port()
    log_path = state / "mlflow.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        mlflow_server_argv("127.0.0.1", port, f"sqlite:///{state}/mlflow.db", artifacts),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **MLFLOW_SERVER_ENV},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{uri}/health", proc, "MLflow server", timeout=timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log_path.read_text()[-3000:]}") from exc
        with environment({"MLFLOW_TRACKING_URI": uri}):
            yield uri
    finally:
        stop_process_group(proc)
        log.close()


# --- peak memory of worker processes -----------------------------------------------------------


@dataclass
class MemorySampler:
    """Polls the resident set size (RSS) of some processes in a thread and keeps each one's peak.

    `with sampler.phase("name"):` records the peak of each process during that phase;
    `sampler.peaks[name]` maps a label to its peak RSS in bytes.
    """

    pids: dict[str, int]
    interval: float = 0.02
    peaks: dict[str, dict[str, int]] = field(default_factory=dict)
    _current: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        import psutil

        self._procs = {label: psutil.Process(pid) for label, pid in self.pids.items()}

    def sample(self) -> dict[str, int]:
        """One reading of every process's RSS (bytes; 0 for a process that is gone)."""
        import psutil

        out = {}
        for label, proc in self._procs.items():
            try:
                out[label] = proc.memory_info().rss
            except psutil.Error:
                out[label] = 0
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            reading = self.sample()
            with self._lock:
                for label, rss in reading.items():
                    self._current[label] = max(self._current.get(label, 0), rss)
            self._stop.wait(self.interval)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self._lock:
            self._current = self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"rss-{name}", daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()
            last = self.sample()
            with self._lock:
                self.peaks[name] = {k: max(v, last.get(k, 0)) for k, v in self._current.items()}


def dask_worker_pids(client) -> dict[str, int]:
    """`{worker address: pid}` of the workers of a Dask client's cluster."""
    return dict(client.run(os.getpid))


@contextmanager
def local_cluster(workers: int, memory_limit: str, *, stack_config: bool = True):
    """A client on `workers` local worker processes of one thread each, configured as the stack
    starts its workers (`ml.cluster.WORKER_DASK_CONFIG`) unless `stack_config` is false."""
    import dask
    from distributed import Client, LocalCluster

    from ml.cluster import WORKER_DASK_CONFIG

    with (
        dask.config.set(dict(WORKER_DASK_CONFIG) if stack_config else {}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def worker_sampler(client) -> MemorySampler:
    """A `MemorySampler` of the client's workers, labelled `worker-0`, `worker-1`, ... in the
    order of their addresses."""
    pids = dask_worker_pids(client)
    return MemorySampler({f"worker-{i}": pids[a] for i, a in enumerate(sorted(pids))})


def available_memory() -> int:
    import psutil

    return psutil.virtual_memory().available
