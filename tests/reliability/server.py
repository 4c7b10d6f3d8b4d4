"""The corpus's HTTP server: files, redirects, errors and the timing tricks of hostile servers.

Routes (the last path segment names the case, `<case>.csv`):

| path | answer |
| --- | --- |
| `/file/<case>.csv` | the case's bytes, with Content-Length |
| `/redirect-same/…` | 302 to `/file/…` on the same host |
| `/redirect-other/…` | 302 to `http://localhost:<port>/file/…` (another host name) |
| `/redirect-loopback/…` | 302 to `http://127.0.0.2:<port>/file/…` (another loopback address) |
| `/loop/…` | 302 to itself, forever |
| `/missing/…` | 404 |
| `/error/…` | 500, always |
| `/slow/…` | the bytes, one every 0.1 s (a 4 KB body takes over 6 minutes) |
| `/huge/…` | Content-Length of 1 TB, then 1 KB |
| `/chunked/…` | the bytes, 8 KB at a time, no Content-Length |
| `/gzip/…` | the case's bytes (already gzip) with `Content-Encoding: gzip` |
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar


class Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[Counter] = Counter()

    def log_message(self, *args):
        pass

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, data: bytes, length: int | None = None, **headers: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()

    def do_GET(self):
        self.hits[self.path] += 1
        route, _, rest = self.path.lstrip("/").partition("/")
        case = rest.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        data = self.files.get(case, b"")
        port = self.server.server_address[1]
        try:
            if route == "file" and case in self.files:
                self._send(data, len(data))
                self.wfile.write(data)
            elif route == "redirect-same":
                self._redirect(f"/file/{rest}")
            elif route == "redirect-other":
                self._redirect(f"http://localhost:{port}/file/{rest}")
            elif route == "redirect-loopback":
                self._redirect(f"http://127.0.0.2:{port}/file/{rest}")
            elif route == "loop":
                self._redirect(self.path)
            elif route == "error":
                self.send_error(500, "always broken")
            elif route == "slow":
                self._send(data, len(data))
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)
            elif route == "huge":
                self._send(data, 10**12)
                self.wfile.write(b"x" * 1024)
            elif route == "chunked":
                self._send(data)
                for i in range(0, len(data), 8192):
                    self.wfile.write(data[i : i + 8192])
            elif route == "gzip":
                self._send(data, len(data), Content_Encoding="gzip")
                self.wfile.write(data)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (it should, on the hostile routes)


@contextmanager
def serve() -> Iterator[str]:
    """The server on a free loopback port; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
