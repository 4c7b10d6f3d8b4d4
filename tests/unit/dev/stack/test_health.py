"""Which Airflow services the health answer names as not healthy."""

from __future__ import annotations

import pytest

from ml.dev.stack import health

pytestmark = pytest.mark.unit

BEAT = "2026-01-01T00:00:10+00:00"


def _component(status: str | None, name: str, beat: str | None = BEAT) -> dict:
    return {"status": status, f"latest_{name}_heartbeat": beat}


def test_airflow_unhealthy_names_components(settings, monkeypatch):
    answer = {
        "metadatabase": {"status": "healthy"},
        "scheduler": _component("healthy", "scheduler"),
        "dag_processor": _component(None, "dag_processor", None),
        "triggerer": _component("healthy", "triggerer"),
    }
    monkeypatch.setattr(health, "airflow_health", lambda s: answer)
    assert health.airflow_unhealthy(settings) == ["airflow-dag-processor"]
    answer["dag_processor"] = _component("healthy", "dag_processor")
    assert health.airflow_unhealthy(settings) == []
    # heartbeats older than `since` (a crashed component's last row) do not count
    assert health.airflow_unhealthy(settings, since=1767225600.0 + 60) == [
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ]


def test_airflow_unreachable_is_the_api_server(settings, monkeypatch):
    def refuse(s):
        raise OSError("connection refused")

    monkeypatch.setattr(health, "airflow_health", refuse)
    assert health.airflow_unhealthy(settings) == ["airflow-api-server"]
