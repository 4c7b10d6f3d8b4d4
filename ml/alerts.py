"""Alerts to people: a task that failed for good, a run that timed out, a missed deadline.

Sent where the settings say: a generic webhook (`alert_webhook_url`, a JSON POST that chat
tools and incident systems take) and/or mail (`alert_smtp_host`, to `alert_mail_to`). With
neither set nothing is sent. A delivery that fails is logged, never raised: an alert must not
turn the failure it reports into another one, nor hide it.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from ml.settings import Settings, get_settings

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Alert:
    """What happened (`title`, one line), why (`text`), and where to look (`fields`: dag, run,
    task, try, links)."""

    title: str
    text: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # `text` as chat webhooks (Slack, Mattermost, Teams' incoming webhooks) show it.
        body = f"{self.title}\n{self.text}".strip()
        return {"title": self.title, "text": body, "fields": self.fields, "source": "mlpipe"}


def airflow_url(dag_id: str, run_id: str, task_id: str | None = None, map_index: int = -1) -> str:
    """The page of a run, or of one of its tasks, in the Airflow UI (served by the API server)."""
    from urllib.parse import quote

    url = (
        f"{get_settings().airflow_api_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id, safe='')}"
    )
    if task_id:
        url += f"/tasks/{task_id}"
        if int(map_index) >= 0:
            url += f"/mapped/{map_index}"
    return url


def send(alert: Alert, settings: Settings | None = None) -> list[str]:
    """Deliver `alert` on every configured channel; returns those that took it."""
    s = settings or get_settings()
    delivered = []
    if s.alert_webhook_url and _post(s.alert_webhook_url, alert):
        delivered.append("webhook")
    if s.alert_smtp_host and s.alert_mail_to and _mail(s, alert):
        delivered.append("mail")
    if not delivered and (s.alert_webhook_url or s.alert_smtp_host):
        log.error("alert not delivered on any channel: %s", alert.title)
    return delivered


def _post(url: str, alert: Alert) -> bool:
    import requests

    try:
        response = requests.post(url, json=alert.to_dict(), timeout=TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as exc:
        log.error("alert webhook %s did not take the alert: %s", url, exc)
        return False
    return True


def _mail(s: Settings, alert: Alert) -> bool:
    message = EmailMessage()
    message["Subject"] = f"[mlpipe] {alert.title}"
    message["From"] = s.alert_mail_from
    message["To"] = s.alert_mail_to
    lines = [alert.text, "", *(f"{k}: {v}" for k, v in alert.fields.items())]
    message.set_content("\n".join(lines).strip() + "\n")
    try:
        with smtplib.SMTP(s.alert_smtp_host, s.alert_smtp_port, timeout=TIMEOUT_S) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("alert mail via %s:%s failed: %s", s.alert_smtp_host, s.alert_smtp_port, exc)
        return False
    return True


async def deadline_missed(what: str = "", context: dict[str, Any] | None = None) -> list[str]:
    """The callback of a deadline alert, awaited by Airflow's triggerer with the late run in
    `context`: `what` was not done in time (sent from a thread: `send` blocks)."""
    import asyncio

    run = (context or {}).get("dag_run") or {}
    deadline = (context or {}).get("deadline") or {}
    dag_id, run_id = run.get("dag_id", "?"), run.get("dag_run_id") or run.get("run_id", "?")
    alert = Alert(
        f"deadline missed: {dag_id} run {run_id}",
        f"{what or 'the run'} not done by {deadline.get('deadline_time', 'its deadline')} "
        f"(state {run.get('state', '?')})",
        {"dag_id": dag_id, "run_id": run_id, "url": airflow_url(dag_id, run_id)},
    )
    return await asyncio.to_thread(send, alert)
