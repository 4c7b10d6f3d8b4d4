"""A local webhook that takes alerts (`ml.alerts`): the JSON bodies POSTed to it, in order."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class AlertReceiver:
    """A local webhook that takes the stack's alerts (`ml.alerts`): the JSON bodies, in order."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, match, timeout: float = 120) -> dict:
        """The first alert for which `match(alert)` holds, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.received:
                if match(alert):
                    return alert
            time.sleep(0.5)
        raise AssertionError(f"no such alert within {timeout} s; received: {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
