"""The plugin's console app served for real (uvicorn), a real MLflow server posting real signed
webhooks to it, a real S3 server holding the audit log: a move of `champion` made with a plain
`MlflowClient` is audited and raises the champion asset event once; a move our promotion makes
under the alias lock (and audits itself) is not audited or scored twice; a forged delivery is
refused. Airflow's side (the asset event) is a recorder here; tests/e2e/test_plugin.py runs it
in Airflow's API server."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from bench._common import mlflow_server
from tests.conftest import free_port, pipeline_environment

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

MODEL = "flights_delay"  # the flights contract's model
SECRET = "integration-secret"


@pytest.fixture(scope="module")
def console(s3_server, tmp_path_factory):
    """The console app on a free port (any user let in), and the asset events it raised."""
    import uvicorn
    from mlpipe_console.app import create_app

    events: list[tuple[str, str, dict]] = []
    app = create_app(
        user_dependency=lambda: "tester",
        raise_event=lambda uri, name, extra: events.append((uri, name, extra)) or len(events),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    env = {
        "MLPIPE_STATE_DIR": str(tmp_path_factory.mktemp("state")),
        "MLPIPE_MLFLOW_WEBHOOK_SECRET": SECRET,
        "MLPIPE_MLFLOW_WEBHOOK_URL": f"http://127.0.0.1:{port}/mlflow/webhook",
        # An audit log of its own: the package's other modules promote this model too.
        "MLPIPE_BUCKET_REPORTS": "reports-webhook",
    }
    with pipeline_environment(env):
        from ml import storage

        storage.ensure_buckets()
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started
        try:
            yield f"http://127.0.0.1:{port}", events
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def mlflow(console, tmp_path_factory):
    """A real MLflow server with the stack's webhook settings, our webhook registered, and a
    model with three versions."""
    from ml import settings, tracking
    from ml.dev.stack import bootstrap, services

    s = settings.get_settings()
    with (
        pipeline_environment(services.mlflow_webhook_env(s)),
        mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri,
    ):
        client = tracking.client(uri)
        bootstrap.ensure_mlflow_webhook(settings.get_settings())
        client.create_registered_model(MODEL)
        for _ in range(3):
            client.create_model_version(MODEL, source="s3://mlflow/artifacts/none")
        yield client


def _wait(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def _records(action=None):
    from ml import registry

    return [r for r in registry.history(MODEL) if action is None or r["action"] == action]


def test_a_plain_alias_move_is_audited_and_scored_once(mlflow, console):
    _, events = console
    mlflow.set_registered_model_alias(MODEL, "champion", "1")
    assert _wait(lambda: len(events) == 1), "no asset event within 30 s"
    uri, name, extra = events[0]
    assert uri == f"mlflow://models/{MODEL}/champion" and name == f"champion.{MODEL}"
    [record] = _records("alias_set")
    assert record["version"] == "1" and record["source"] == "mlflow-webhook"
    assert record["by"].startswith("mlflow") and record["delivery_id"]
    assert any("no promotion record" in w for w in record["warnings"])
    assert extra["audit_record"] == record["audit_record"] and extra["version"] == "1"
    # Other aliases are neither audited nor scored.
    mlflow.set_registered_model_alias(MODEL, "previous", "2")
    time.sleep(3)
    assert len(events) == 1 and len(_records()) == 1


def test_a_move_our_promotion_audits_is_not_audited_or_scored_again(mlflow, console):
    from ml import registry

    _, events = console
    before = len(events)
    with registry.alias_lock(MODEL):  # what ml.registry.promote does
        mlflow.set_registered_model_alias(MODEL, "champion", "2")
        time.sleep(3)  # the webhook arrives meanwhile, and waits for the lock
        registry.append_audit(
            MODEL,
            {"action": "promote", "version": "2", "promoted": True, "champion_after": "2"},
        )
    time.sleep(5)
    assert len(events) == before
    assert [r["version"] for r in _records("alias_set")] == ["1"]
    # Moving back by hand to a version that was promoted: audited, scored, no warning.
    mlflow.set_registered_model_alias(MODEL, "champion", "1")
    assert _wait(lambda: len(events) == before + 1)
    assert [r["version"] for r in _records("alias_set")] == ["1", "1"]
    mlflow.set_registered_model_alias(MODEL, "champion", "2")
    assert _wait(lambda: len(events) == before + 2)
    assert _records("alias_set")[-1]["warnings"] == []


def test_a_deleted_champion_is_audited_but_not_scored(mlflow, console):
    _, events = console
    before = len(events)
    mlflow.delete_registered_model_alias(MODEL, "champion")
    assert _wait(lambda: bool(_records("alias_deleted")))
    time.sleep(1)
    assert len(events) == before


def test_a_forged_delivery_is_refused(console, mlflow):
    url, events = console
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": MODEL, "alias": "champion", "version": "3"},
        }
    )
    headers = {
        "X-MLflow-Delivery-Id": "forged",
        "X-MLflow-Timestamp": str(int(time.time())),
        "X-MLflow-Signature": "v1,bm90IGEgc2lnbmF0dXJl",
    }
    before, raised = len(_records()), len(events)
    answer = requests.post(f"{url}/mlflow/webhook", data=body, headers=headers, timeout=30)
    assert answer.status_code == 401 and "does not match" in answer.json()["error"]
    assert len(_records()) == before and len(events) == raised


def test_the_console_lists_the_audit_log_and_renders_records(console, mlflow):
    url, _ = console
    index = requests.get(f"{url}/", timeout=60)
    assert index.status_code == 200
    assert f"Promotions of {MODEL}" in index.text and "alias_set" in index.text
    key = _records("alias_set")[0]["audit_record"].split("/", 3)[3]
    record = requests.get(f"{url}/reports/{key}", timeout=30)
    assert record.status_code == 200 and "no promotion record" in record.text
    assert requests.get(f"{url}/reports/../raw/x.json", timeout=30).status_code == 404
    missing = requests.get(f"{url}/reports/validation/none/x.html", timeout=30)
    assert missing.status_code == 404
