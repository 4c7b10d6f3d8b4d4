"""The deployment-shaped stack is well-formed and speaks the same settings as the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ml.settings import ZONES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_every_part_of_the_architecture(compose):
    services = set(compose["services"])
    assert {"minio", "postgres", "redis", "mlflow", "dask-scheduler", "dask-worker"} <= services
    assert {
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    } <= services
    assert "name" not in compose  # docker-compose 1.x rejects a top-level name


def test_gpu_worker_is_optional_and_listens_on_the_gpu_queue(compose):
    gpu = compose["services"]["airflow-worker-gpu"]
    assert gpu.get("profiles") == ["gpu"]
    assert "gpu" in " ".join(map(str, gpu.get("command", [])))


def test_every_zone_of_the_settings_gets_a_bucket(compose):
    assert set(compose["x-zone-buckets"]) == {f"MLPIPE_BUCKET_{zone.upper()}" for zone in ZONES}
    script = (ROOT / "infra" / "minio" / "bootstrap.sh").read_text()
    zones = re.search(r"ZONES=\(([^)]*)\)", script).group(1).split()
    assert set(zones) == set(ZONES)


def test_no_secret_values_in_the_compose_file():
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET|_KEY)\s*[:=]", line) and "${" not in line:
            pytest.fail(
                f"a credential is set in docker-compose.yml instead of taken from the env: {line.strip()}"
            )


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed"
)
def test_docker_compose_accepts_the_file():
    subprocess.run(
        [
            "docker-compose",
            "-f",
            str(COMPOSE),
            "--env-file",
            str(ROOT / "infra" / "compose.env.example"),
            "config",
            "-q",
        ],
        check=True,
        cwd=ROOT,
    )
