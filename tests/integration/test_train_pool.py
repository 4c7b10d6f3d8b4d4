"""The local stack's Airflow gets the `gpu` pool that training tasks run in, sized by settings."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from ml.dev.stack import bootstrap, layout, services
from ml.settings import Settings

pytestmark = pytest.mark.integration


def test_gpu_pool_is_created_with_the_configured_slots_and_resized(tmp_path: Path) -> None:
    s = Settings(
        _env_file=None,
        state_dir=tmp_path / "state",
        airflow_database_url=None,
        gpu_pool_slots=3,
    )
    deadline = time.monotonic() + 300
    bootstrap.finish_migrate(s, bootstrap.start_migrate(s), deadline)
    env = {**os.environ, **services.airflow_env(s)}

    def pool() -> dict:
        out = subprocess.run(
            [layout.executable("airflow"), "pools", "get", "gpu", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return json.loads(out.stdout)[0]

    assert bootstrap.ensure_gpu_pool(s) == 3
    assert int(pool()["slots"]) == 3
    s.gpu_pool_slots = 1  # resized in place on the next bootstrap
    assert bootstrap.ensure_gpu_pool(s) == 1
    assert int(pool()["slots"]) == 1
