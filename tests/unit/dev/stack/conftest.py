"""Settings of a local stack in a temporary state folder (nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        S3_ENDPOINT_URL="http://127.0.0.1:19000",
        MLFLOW_TRACKING_URI="http://127.0.0.1:15000",
        DASK_SCHEDULER_ADDRESS="tcp://127.0.0.1:18786",
        AWS_ACCESS_KEY_ID="unit",
        AWS_SECRET_ACCESS_KEY="unit-secret",
        airflow_api_url="http://127.0.0.1:18080",
        state_dir=tmp_path / "state",
        mlflow_database_url=None,
        airflow_database_url=None,
        dask_workers=3,
        dask_worker_memory_limit="1GiB",
    )
