"""Services the fault tests stop and start again: an MLflow tracking server that keeps its port
and its database across a restart, so clients that held its address find it again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from bench._common import stop_process_group, wait_http
from tests.conftest import free_port


class RestartableMlflow:
    """A real MLflow server (SQLite in `state`, artifacts proxied to the S3 endpoint of the
    environment) on one loopback port for its whole life: `stop()` kills it (SIGKILL, as a
    crash would), `start()` brings it back on the same port and database."""

    def __init__(self, state: Path, artifacts: str = "s3://mlflow/artifacts") -> None:
        self.state, self.artifacts = Path(state), artifacts
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        from ml.dev.stack.services import MLFLOW_SERVER_ENV, mlflow_server_argv

        argv = mlflow_server_argv(
            "127.0.0.1", self.port, f"sqlite:///{self.state}/mlflow.db", self.artifacts
        )
        log_path = self.state / "mlflow.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **MLFLOW_SERVER_ENV},
            )
        try:
            wait_http(f"{self.uri}/health", self.proc, "MLflow server", timeout=timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log_path.read_text()[-3000:]}") from exc

    def stop(self) -> None:
        """Kill the server and its workers at once (no graceful shutdown)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None
