"""MLflow webhooks, received: the signature check and the alias move a payload reports.

MLflow (3.x, `mlflow/webhooks/delivery.py`) signs `<delivery id>.<timestamp>.<body>` with
HMAC-SHA256 and the webhook's secret, and sends `v1,<base64 digest>` in `X-MLflow-Signature`,
with `X-MLflow-Delivery-Id` and `X-MLflow-Timestamp` (Unix seconds). A request is accepted only
with all three, a timestamp within `TOLERANCE_S` of now (replay protection) and a matching
signature, compared in constant time. No secret configured: every request is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

# MLflow's header names and signature version (mlflow.webhooks.constants; a unit test checks).
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
TOLERANCE_S = 300

ALIAS_ENTITY = "model_version_alias"
# Payload keys that may name the person (MLflow 3.17 sends none; kept if a later one does).
_USER_KEYS = ("user", "user_id", "username", "created_by")


class WebhookRejected(Exception):
    """A request that is not a genuine, fresh MLflow webhook (the message says why)."""


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The signature MLflow sends for this delivery."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    secret: str | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> str:
    """Check a delivery's signature and age; return its delivery id, or raise WebhookRejected."""
    if not secret:
        raise WebhookRejected("no webhook secret configured (MLPIPE_MLFLOW_WEBHOOK_SECRET)")
    lower = {k.lower(): v for k, v in headers.items()}
    sent, stamp, delivery = (
        lower.get(h.lower(), "") for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_ID_HEADER)
    )
    if not (sent and stamp and delivery):
        raise WebhookRejected(
            f"missing {SIGNATURE_HEADER}, {TIMESTAMP_HEADER} or {DELIVERY_ID_HEADER}"
        )
    try:
        age = abs((time.time() if now is None else now) - int(stamp))
    except ValueError:
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is not a Unix time: {stamp!r}") from None
    if age > tolerance_s:
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is {age:.0f}s off (over {tolerance_s:.0f}s)")
    expected = signature(secret, delivery, stamp, body)
    # Several space-separated signatures may be sent (secret rotation): any one may match.
    if not any(hmac.compare_digest(expected, s) for s in sent.split()):
        raise WebhookRejected("signature does not match")
    return delivery


def alias_event(body: bytes) -> dict[str, Any] | None:
    """`{"action", "model_name", "alias", "version", "by"}` of a model version alias payload
    (`version` None when the alias was deleted); None for any other entity."""
    doc = json.loads(body)
    if doc.get("entity") != ALIAS_ENTITY:
        return None
    data = doc.get("data") or {}
    user = next((str(data[k]) for k in _USER_KEYS if data.get(k)), "")
    return {
        "action": doc.get("action"),
        "model_name": str(data["name"]),
        "alias": str(data["alias"]),
        "version": str(data["version"]) if doc.get("action") == "created" else None,
        "by": f"mlflow:{user}" if user else "mlflow: a registry user (MLflow names nobody)",
    }
