"""The Helm values under infra/helm/ are YAML the charts take, and every pipeline setting they
pass (MLPIPE_/S3_/MLFLOW_ names) is one the code reads: a renamed setting cannot silently stop
reaching Kubernetes pods."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ml.settings import ZONES, Settings
from tests.unit.test_deployment_files import setting_env_names

pytestmark = pytest.mark.unit

HELM = Path(__file__).resolve().parents[2] / "infra" / "helm"
OURS = re.compile(r"^(MLPIPE|S3|MLFLOW)_[A-Z0-9_]+$")


def _values(name: str) -> dict:
    return yaml.safe_load((HELM / name).read_text())


def _env_entries(tree: object) -> list[dict]:
    """Every `{name: ..., value|valueFrom: ...}` or `{envName: ...}` entry anywhere in the values."""
    found = []
    if isinstance(tree, dict):
        if "envName" in tree or ("name" in tree and ("value" in tree or "valueFrom" in tree)):
            found.append(tree)
        for value in tree.values():
            found += _env_entries(value)
    elif isinstance(tree, list):
        for item in tree:
            found += _env_entries(item)
    return found


def _names(values: dict) -> set[str]:
    return {entry.get("envName") or entry["name"] for entry in _env_entries(values)}


def _known() -> set[str]:
    """Setting names, plus what the local stack hands its own processes (MLflow's own names)."""
    return setting_env_names() | set(Settings(_env_file=None).service_env())


@pytest.mark.parametrize("name", ["airflow-values.yaml", "dask-values.yaml"])
def test_every_pipeline_name_in_the_values_is_a_setting(name):
    names = {n for n in _names(_values(name)) if OURS.match(n)}
    assert names, f"{name} passes no pipeline settings"
    unknown = names - _known()
    assert not unknown, f"{name}: not settings of ml/settings.py: {sorted(unknown)}"
    # also names written in comments or strings (a commented-out example must be right too)
    text_names = set(
        re.findall(r"\b((?:MLPIPE|S3|MLFLOW)_[A-Z0-9_]+)\b", (HELM / name).read_text())
    )
    assert text_names <= _known(), sorted(text_names - _known())


def test_both_charts_get_the_buckets_and_endpoints_of_every_zone():
    for name in ("airflow-values.yaml", "dask-values.yaml"):
        names = _names(_values(name))
        assert {f"MLPIPE_BUCKET_{z.upper()}" for z in ZONES} <= names, name
        assert {"S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "MLPIPE_PII_SALT"} <= names, name


def test_secrets_come_from_kubernetes_secrets_never_from_the_values():
    for name in ("airflow-values.yaml", "dask-values.yaml"):
        for entry in _env_entries(_values(name)):
            key = entry.get("envName") or entry["name"]
            if re.search(r"(PASSWORD|SECRET|SALT)$", key) and not key.endswith("_VERSION"):
                assert "value" not in entry, f"{name}: {key} has a literal value"


def test_airflow_values_use_the_project_image_celery_and_fab():
    values = _values("airflow-values.yaml")
    assert values["executor"] == "CeleryExecutor"
    assert values["config"]["core"]["auth_manager"].endswith("FabAuthManager")
    assert values["images"]["airflow"]["repository"].endswith("/mlpipe")
    dask = _values("dask-values.yaml")
    assert dask["worker"]["image"]["repository"] == values["images"]["airflow"]["repository"]
    assert dask["jupyter"]["enabled"] is False
