"""A local Slack-Web-API-compatible HTTP server for tests: records requests, can answer 429 and 500.

slack_sdk is pointed at it with ``base_url`` (``SLACK_API_BASE_URL``). It implements what the notifier
uses: ``chat.postMessage`` (stores the message with its metadata), ``conversations.history`` (returns
them, newest first), ``conversations.list`` and an incoming-webhook path.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

CHANNEL_ID = "C0APTENRGY"


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"ok": False, "error": "internal_error"})


class SlackStub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.messages: list[dict[str, Any]] = []    # what was accepted, oldest first
        self.webhook_posts: list[dict[str, Any]] = []
        self.script: deque[Scripted] = deque()       # next answers to chat.postMessage / webhook posts
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "json" in (self.headers.get("Content-Type") or ""):
                    return dict(json.loads(raw or b"{}"))
                return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                stub._record(url.path, params)
                self._conversations(url.path, params)

            def _conversations(self, path: str, params: dict[str, Any]) -> None:
                if path.endswith("/conversations.history"):
                    oldest = float(params.get("oldest", 0))
                    with stub.lock:
                        msgs = [m for m in reversed(stub.messages) if float(m["ts"]) >= oldest]
                    self._reply(200, {"ok": True, "messages": msgs, "has_more": False})
                elif path.endswith("/conversations.list"):
                    self._reply(200, {"ok": True, "channels": [{"id": CHANNEL_ID, "name": "apt-energy-alerts"}]})
                else:
                    self._reply(404, {"ok": False, "error": "unknown_method"})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = self._body()
                stub._record(url.path, body)
                if "/conversations." in url.path:
                    return self._conversations(url.path, body)
                with stub.lock:
                    scripted = stub.script.popleft() if stub.script else None
                if url.path.endswith("/chat.postMessage"):
                    if scripted:
                        return self._reply(scripted.status, scripted.body, scripted.headers)
                    with stub.lock:
                        ts = f"{time.time():.6f}"
                        stub.messages.append({"type": "message", "ts": ts, "text": body.get("text"),
                                              "blocks": body.get("blocks"), "metadata": body.get("metadata")})
                    self._reply(200, {"ok": True, "channel": CHANNEL_ID, "ts": ts})
                elif url.path.startswith("/webhook"):
                    if scripted:
                        return self._reply(scripted.status, scripted.body, scripted.headers)
                    with stub.lock:
                        stub.webhook_posts.append(body)
                    data = b"ok"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._reply(404, {"ok": False, "error": "unknown_method"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append((path, body))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook/T000/B000/XXXX"

    def posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for p, b in self.requests if p.endswith("/chat.postMessage")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
