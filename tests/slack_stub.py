"""A local Slack-Web-API-compatible HTTP server for tests: records requests and can misbehave like Slack.

slack_sdk is pointed at it with ``base_url`` (``SLACK_API_BASE_URL``). It implements what the notifier
uses: ``chat.postMessage`` (stores the message with its metadata), ``conversations.history`` (returns
them newest first, metadata only with ``include_all_metadata``, paged by ``limit``/``cursor``),
``conversations.list`` (:attr:`SlackStub.channels`: what the bot may list), ``chat.update`` (edits a
stored message, recorded in :attr:`SlackStub.updates`) and an incoming-webhook path.

:attr:`SlackStub.script` holds the next answers to posts (chat.postMessage or webhook). A scripted answer
can *accept* the message (store it, as Slack did) and still answer 500, or answer only after
``delay_s`` — longer than the client's timeout, so the answer is lost — or answer 429 with Retry-After.
:attr:`SlackStub.history_outage` makes the next reads of the history fail; :attr:`SlackStub.history_error`
answers every read with that Slack error (e.g. ``missing_scope``: the bot may not read the channel).
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
    """One scripted answer to a post."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"ok": False, "error": "internal_error"})
    accept: bool = False   # store the message first: Slack took it, whatever the answer says
    delay_s: float = 0.0   # answer this late (past the client's timeout: the answer is lost)

    @classmethod
    def accepted_then_500(cls) -> Scripted:
        return cls(500, accept=True)

    @classmethod
    def accepted_then_silent(cls, delay_s: float) -> Scripted:
        return cls(200, accept=True, delay_s=delay_s)

    @classmethod
    def rate_limited(cls, retry_after_s: int = 1) -> Scripted:
        return cls(429, {"Retry-After": str(retry_after_s)}, {"ok": False, "error": "ratelimited"})


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


class SlackStub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.messages: list[dict[str, Any]] = []    # what was accepted, oldest first
        self.webhook_posts: list[dict[str, Any]] = []
        self.script: deque[Scripted] = deque()       # next answers to chat.postMessage / webhook posts
        self.history_outage = 0                      # answer the next N conversations.history calls with 503
        self.history_error: str | None = None        # answer every conversations.history call with this error
        self.channels = [{"id": CHANNEL_ID, "name": "apt-energy-alerts"}]   # what conversations.list shows
        self.updates: list[dict[str, Any]] = []      # chat.update requests, in order
        self.socket_mode: Any = None                 # a SocketModeStub (tests/socket_mode_stub.py)
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass   # the client gave up waiting (a scripted late answer)

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
                    with stub.lock:
                        down = stub.history_outage > 0
                        stub.history_outage -= int(down)
                    if down:
                        return self._reply(503, {"ok": False, "error": "service_unavailable"})
                    if stub.history_error:
                        return self._reply(200, {"ok": False, "error": stub.history_error})
                    oldest = float(params.get("oldest", 0))
                    start = int(params.get("cursor") or 0)
                    limit = int(params.get("limit") or 100)
                    with stub.lock:
                        msgs = [dict(m) for m in reversed(stub.messages) if float(m["ts"]) >= oldest]
                    if not _truthy(params.get("include_all_metadata")):
                        for m in msgs:
                            m.pop("metadata", None)
                    page = msgs[start:start + limit]
                    more = start + limit < len(msgs)
                    self._reply(200, {"ok": True, "messages": page, "has_more": more,
                                      "response_metadata": {"next_cursor": str(start + limit) if more else ""}})
                elif path.endswith("/conversations.list"):
                    self._reply(200, {"ok": True, "channels": list(stub.channels)})
                else:
                    self._reply(404, {"ok": False, "error": "unknown_method"})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = self._body()
                stub._record(url.path, body)
                if "/conversations." in url.path:
                    return self._conversations(url.path, body)
                if url.path.endswith("/chat.update"):
                    return self._reply(200, stub._update(body))
                if url.path.endswith("/apps.connections.open"):
                    return self._reply(200, stub._open_connection(self.headers.get("Authorization") or ""))
                with stub.lock:
                    scripted = stub.script.popleft() if stub.script else None
                if url.path.endswith("/chat.postMessage"):
                    ts = stub._accept(body) if scripted is None or scripted.accept else None
                    if scripted:
                        time.sleep(scripted.delay_s)
                        if scripted.status != 200:
                            return self._reply(scripted.status, scripted.body, scripted.headers)
                    self._reply(200, {"ok": True, "channel": CHANNEL_ID, "ts": ts})
                elif url.path.startswith("/webhook"):
                    if scripted is None or scripted.accept:
                        with stub.lock:
                            stub.webhook_posts.append(body)
                    if scripted:
                        time.sleep(scripted.delay_s)
                        if scripted.status != 200:
                            return self._reply(scripted.status, scripted.body, scripted.headers)
                    data = b"ok"
                    try:
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    except OSError:
                        pass
                else:
                    self._reply(404, {"ok": False, "error": "unknown_method"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append((path, body))

    def _accept(self, body: dict[str, Any]) -> str:
        metadata = body.get("metadata")
        if isinstance(metadata, str):   # form-encoded posts carry it as JSON text
            metadata = json.loads(metadata)
        with self.lock:
            # Slack's ts values are unique per channel and increase
            ts = f"{max(time.time(), float(self.messages[-1]['ts']) + 1e-6 if self.messages else 0):.6f}"
            self.messages.append({"type": "message", "ts": ts, "text": body.get("text"),
                                  "blocks": body.get("blocks"), "metadata": metadata})
        return ts

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        blocks = body.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        with self.lock:
            self.updates.append({**body, "blocks": blocks})
            for m in self.messages:
                if m["ts"] == body.get("ts"):
                    m["text"], m["blocks"] = body.get("text"), blocks
                    return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts")}
        return {"ok": False, "error": "message_not_found"}

    def _open_connection(self, authorization: str) -> dict[str, Any]:
        """``apps.connections.open``: a Socket Mode URL for an app-level token (see :class:`SocketModeStub`)."""
        socket_mode = self.socket_mode
        if socket_mode is None or not authorization.startswith("Bearer xapp-"):
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": socket_mode.url}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook/T000/B000/XXXX"

    def posts(self) -> list[dict[str, Any]]:
        """Every chat.postMessage request received, accepted or not."""
        with self.lock:
            return [b for p, b in self.requests if p.endswith("/chat.postMessage")]

    def delivered_ids(self) -> list[int]:
        """Notification ids of the messages the channel holds, one entry per message carrying it."""
        with self.lock:
            return [int(i) for m in self.messages if m.get("metadata")
                    for i in m["metadata"].get("event_payload", {}).get("notification_ids", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
