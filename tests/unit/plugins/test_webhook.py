"""The MLflow webhook signature check, against MLflow's own signing code (no servers)."""

from __future__ import annotations

import json
import time

import pytest
from mlpipe_console import webhook
from mlpipe_console.webhook import WebhookRejected, verify

pytestmark = pytest.mark.unit

SECRET = "s3cr3t"
BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2026-11-30T20:00:00+00:00",
        "data": {"name": "flights_delay", "alias": "champion", "version": "3"},
    }
).encode()


def _headers(secret: str = SECRET, body: bytes = BODY, stamp: int | None = None) -> dict:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    stamp = str(int(time.time()) if stamp is None else stamp)
    return {
        "X-MLflow-Delivery-Id": "d-1",
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, "d-1", stamp, body.decode()),
    }


def test_header_names_and_version_are_mlflows():
    from mlflow.webhooks import constants

    assert webhook.SIGNATURE_HEADER == constants.WEBHOOK_SIGNATURE_HEADER
    assert webhook.TIMESTAMP_HEADER == constants.WEBHOOK_TIMESTAMP_HEADER
    assert webhook.DELIVERY_ID_HEADER == constants.WEBHOOK_DELIVERY_ID_HEADER
    assert webhook.SIGNATURE_VERSION == constants.WEBHOOK_SIGNATURE_VERSION


def test_a_delivery_signed_by_mlflow_is_accepted():
    assert verify(SECRET, _headers(), BODY) == "d-1"
    # Header names are case-insensitive (ASGI servers lower-case them).
    lower = {k.lower(): v for k, v in _headers().items()}
    assert verify(SECRET, lower, BODY) == "d-1"


@pytest.mark.parametrize(
    ("secret", "headers", "body", "why"),
    [
        ("other", None, BODY, "signature does not match"),
        (SECRET, None, BODY.replace(b'"3"', b'"4"'), "signature does not match"),
        (None, None, BODY, "no webhook secret"),
        ("", None, BODY, "no webhook secret"),
    ],
)
def test_a_forged_or_altered_delivery_is_refused(secret, headers, body, why):
    with pytest.raises(WebhookRejected, match=why):
        verify(secret, headers or _headers(), body)


def test_a_stale_or_incomplete_delivery_is_refused():
    old = _headers(stamp=int(time.time()) - 3600)
    with pytest.raises(WebhookRejected, match="off"):
        verify(SECRET, old, BODY)
    for missing in ("X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id"):
        headers = {k: v for k, v in _headers().items() if k != missing}
        with pytest.raises(WebhookRejected, match="missing"):
            verify(SECRET, headers, BODY)
    with pytest.raises(WebhookRejected, match="not a Unix time"):
        verify(SECRET, {**_headers(), "X-MLflow-Timestamp": "yesterday"}, BODY)


def test_the_signature_covers_delivery_id_and_timestamp():
    headers = _headers()
    with pytest.raises(WebhookRejected, match="does not match"):
        verify(SECRET, {**headers, "X-MLflow-Delivery-Id": "d-2"}, BODY)
    stamp = str(int(headers["X-MLflow-Timestamp"]) + 1)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify(SECRET, {**headers, "X-MLflow-Timestamp": stamp}, BODY)


def test_one_of_several_signatures_may_match():
    headers = _headers()
    both = {**headers, "X-MLflow-Signature": f"v1,AAAA {headers['X-MLflow-Signature']}"}
    assert verify(SECRET, both, BODY) == "d-1"


def test_alias_events_are_read_from_mlflow_payloads():
    created = webhook.alias_event(BODY)
    assert created["model_name"] == "flights_delay" and created["version"] == "3"
    assert created["alias"] == "champion" and created["action"] == "created"
    assert "MLflow names nobody" in created["by"]
    deleted = json.loads(BODY)
    deleted["action"], deleted["data"] = "deleted", {"name": "m", "alias": "champion"}
    assert webhook.alias_event(json.dumps(deleted).encode())["version"] is None
    with_user = json.loads(BODY)
    with_user["data"]["user"] = "alice"
    assert webhook.alias_event(json.dumps(with_user).encode())["by"] == "mlflow:alice"
    other = {"entity": "model_version", "action": "created", "data": {}}
    assert webhook.alias_event(json.dumps(other).encode()) is None
