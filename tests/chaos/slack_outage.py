"""A Slack outage with ambiguous failures, in front of tests/slack_stub.py's stand-in.

While an outage is on, each ``chat.postMessage`` is forwarded to the stand-in (so Slack *has* the
message) and then answered in a way that leaves the client in doubt: the connection is dropped without
an answer, or a 503 comes back. Everything else, and every request once the outage is over, passes
through unchanged."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from tests.slack_stub import SlackStub


class AmbiguousSlack:
    def __init__(self, stub: SlackStub) -> None:
        self.stub = stub
        self.failures_left = 0
        self.ambiguous = 0          # posts Slack accepted whose answer the client never saw
        self.lock = threading.Lock()
        target = urlparse(stub.base_url)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(method, self.path, body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                if self.path.endswith("/chat.postMessage") and proxy._fail_this_one():
                    if proxy.ambiguous % 2:
                        self.close_connection = True   # posted, but the client hears nothing
                        self.connection.shutdown(2)
                        return
                    data = b'{"ok": false, "error": "service_unavailable"}'
                    self.send_response(503)
                else:
                    self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _fail_this_one(self) -> bool:
        with self.lock:
            if self.failures_left <= 0:
                return False
            self.failures_left -= 1
            self.ambiguous += 1
            return True

    def outage(self, failures: int) -> None:
        """The next ``failures`` posts reach Slack but their answers are lost or errors."""
        with self.lock:
            self.failures_left = failures

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
