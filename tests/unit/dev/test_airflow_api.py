"""The REST client authenticates as configured and renews a stale token once (against a small
real HTTP server that plays the Airflow API's token rules)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from ml.dev.airflow_api import AirflowAPIError, AirflowClient
from ml.settings import Settings

pytestmark = pytest.mark.unit


class _Api(BaseHTTPRequestHandler):
    """POST /auth/token with alice/pw1234 issues token-N; GET /api/v2/pools needs the newest."""

    issued = 0
    seen: ClassVar[list[str]] = []

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.seen.append(f"GET {self.path}")
        if self.path == "/auth/token":
            return self._send(405, {"detail": "Method Not Allowed"})
        if self.headers.get("Authorization") != f"Bearer token-{type(self).issued}":
            return self._send(401, {"detail": "Token Expired"})
        return self._send(200, {"pools": []})

    def do_POST(self):
        self.seen.append(f"POST {self.path}")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body != {"username": "alice", "password": "pw1234"}:
            return self._send(401, {"detail": "Invalid credentials"})
        type(self).issued += 1
        return self._send(201, {"access_token": f"token-{type(self).issued}"})


@pytest.fixture
def api():
    _Api.issued, _Api.seen = 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_credentials_come_from_the_settings_and_a_stale_token_is_renewed_once(api):
    s = Settings(
        _env_file=None, airflow_api_url=api, airflow_username="alice", airflow_password="pw1234"
    )
    client = AirflowClient.from_settings(s)
    assert client.request("GET", "/pools") == {"pools": []}
    assert _Api.seen == ["POST /auth/token", "GET /api/v2/pools"]
    _Api.issued += 1  # the server now wants a newer token: ours is stale
    assert client.request("GET", "/pools") == {"pools": []}
    assert _Api.seen[2:] == ["GET /api/v2/pools", "POST /auth/token", "GET /api/v2/pools"]


def test_wrong_or_missing_credentials_are_named(api):
    with pytest.raises(AirflowAPIError, match=r"POST as 'alice'.*-> 401"):
        AirflowClient(api, "alice", "wrong").request("GET", "/pools")
    with pytest.raises(AirflowAPIError, match=r"GET \(no credentials\).*MLPIPE_AIRFLOW_USERNAME"):
        AirflowClient.from_settings(Settings(_env_file=None, airflow_api_url=api)).request(
            "GET", "/pools"
        )


class _Busy(_Api):
    """Like `_Api`, but the first answers to each path are 503 (a server catching up), and
    POST /api/v2/dags/x/dagRuns answers 500 (an error that must not trigger twice)."""

    def do_GET(self):
        if self.path.startswith("/api/") and self.seen.count(f"GET {self.path}") < 2:
            self.seen.append(f"GET {self.path}")
            return self._send(503, {"detail": "catching up"})
        return super().do_GET()

    def do_POST(self):
        if self.path.startswith("/api/v2/dags/"):
            self.seen.append(f"POST {self.path}")
            return self._send(500, {"detail": "boom"})
        return super().do_POST()


def test_transient_answers_are_retried_and_a_failed_trigger_is_not(monkeypatch):
    monkeypatch.setattr("ml.dev.airflow_api.RETRY_DELAYS", (0.01, 0.01, 0.01))
    _Busy.issued, _Busy.seen = 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = AirflowClient(f"http://127.0.0.1:{server.server_port}", "alice", "pw1234")
        assert client.request("GET", "/pools") == {"pools": []}
        assert _Busy.seen.count("GET /api/v2/pools") == 3  # two 503s, then the answer
        with pytest.raises(AirflowAPIError, match="-> 500"):
            client.trigger("x")
        assert _Busy.seen.count("POST /api/v2/dags/x/dagRuns") == 1  # a POST 500 stands
    finally:
        server.shutdown()
