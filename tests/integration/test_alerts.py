"""Alerts reach people: a local webhook receiver and a local SMTP receiver take what
`ml.alerts` sends; a receiver that is down is logged, never raised."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from ml import alerts
from ml.settings import Settings
from tests.alert_receiver import AlertReceiver
from tests.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


class SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message (EHLO, MAIL, RCPT, DATA, QUIT)."""

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 test ESMTP")
        while line := self.rfile.readline().decode():
            verb = line.split(" ", 1)[0].strip().upper()
            if verb == "DATA":
                self.reply("354 go on")
                data = []
                while (row := self.rfile.readline().decode()) not in (".\r\n", ""):
                    data.append(row)
                self.server.messages.append("".join(data))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[str]]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SMTPHandler)
    server.messages = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], server.messages
    finally:
        server.shutdown()
        server.server_close()


ALERT = alerts.Alert(
    "validate_flights.validate failed",
    "ContractViolation: flights.dep_delay.max broken by 3 rows",
    {"dag_id": "validate_flights", "run_id": "asset_triggered__1", "try": 1},
)


def test_an_alert_goes_to_the_webhook_and_by_mail(webhook, smtp):
    url, posted = webhook.url, webhook.received
    port, mails = smtp
    s = Settings(
        _env_file=None,
        alert_webhook_url=url,
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=port,
        alert_mail_to="oncall@example.org",
    )
    assert alerts.send(ALERT, s) == ["webhook", "mail"]
    assert posted[0]["title"] == ALERT.title and "dep_delay.max" in posted[0]["text"]
    assert posted[0]["fields"]["dag_id"] == "validate_flights"
    assert "Subject: [mlpipe] validate_flights.validate failed" in mails[0]
    assert "To: oncall@example.org" in mails[0] and "run_id: asset_triggered__1" in mails[0]


def test_a_receiver_that_is_down_is_logged_not_raised(caplog):
    s = Settings(
        _env_file=None,
        alert_webhook_url=f"http://127.0.0.1:{free_port()}/hook",
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=free_port(),
        alert_mail_to="oncall@example.org",
    )
    assert alerts.send(ALERT, s) == []
    assert "alert not delivered on any channel" in caplog.text


def test_no_channel_configured_sends_nothing():
    assert alerts.send(ALERT, Settings(_env_file=None)) == []
