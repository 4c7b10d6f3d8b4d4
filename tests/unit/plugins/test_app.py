"""The console app's own rules, without Airflow or storage: pages need the Airflow user (a
browser without one goes to the login page), and the webhook receiver refuses unsigned posts."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from mlpipe_console.app import create_app

pytestmark = pytest.mark.unit


def _nobody():
    raise HTTPException(401, "Not authenticated")


@pytest.fixture
def client(monkeypatch):
    monkeypatch.delenv("MLPIPE_MLFLOW_WEBHOOK_SECRET", raising=False)
    from ml.settings import reset_settings

    reset_settings()
    events = []
    app = create_app(user_dependency=_nobody, raise_event=lambda *a: events.append(a))
    yield TestClient(app), events
    reset_settings()


def test_pages_need_the_airflow_user(client):
    http, _ = client
    for page in ("/", "/reports/validation/x/y.html", "/quarantine?ref=s3://q/a/b/c"):
        assert http.get(page).status_code == 401
    browser = http.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 307 and "login" in browser.headers["location"]


def test_the_webhook_refuses_posts_without_a_secret_or_signature(client):
    http, events = client
    answer = http.post("/mlflow/webhook", content=b"{}")
    assert answer.status_code == 401 and "no webhook secret" in answer.json()["error"]
    assert events == []
