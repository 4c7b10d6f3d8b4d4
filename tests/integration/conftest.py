"""Real servers for integration tests: an S3 API server process, a Dask cluster, an MLflow server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._common import mlflow_server as mlflow_server_process
from bench._common import stop_process_group, wait_http
from tests.conftest import free_port, pipeline_environment

_stop = stop_process_group


@pytest.fixture(scope="package")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """A real S3 API server process (moto) on a free loopback port, buckets created.

    Sets the environment every component reads, so code under test, Dask workers and the
    MLflow server started after it all see the same endpoint.
    """
    port = free_port()
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "wb")  # noqa: SIM115
    bindir = Path(sys.executable).parent
    proc = subprocess.Popen(
        [str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(endpoint, proc, "moto S3 server")
    env = {
        "S3_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    from ml import storage

    try:
        with pipeline_environment(env):
            storage.ensure_buckets()
            yield endpoint
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="package")
def dask_cluster(s3_server) -> Iterator[str]:
    """A real Dask cluster: a scheduler and two worker processes, started after the S3 env is set."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        memory_limit="2GiB",
    )
    try:
        with pipeline_environment({"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address}):
            yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(scope="package")
def mlflow_server(s3_server, tmp_path_factory) -> Iterator[str]:
    """A real MLflow tracking server: SQLite backend, artifacts proxied to the `mlflow` bucket."""
    with mlflow_server_process(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri
