"""A scriptable OpenAI-compatible chat server on 127.0.0.1 for tests (stdlib only).

`serve()` starts one in a thread and yields its `FakeServer`: queue `Reply`s with `add` (or set
`responder`), point a client at `base_url`, read back `requests`."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "Tags: cat, sofa\nCaption: A cat on a sofa."


def answer(content: Any) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


@dataclass
class Reply:
    """One planned answer: a dict/list body is sent as JSON, str/bytes as they are."""

    status: int = 200
    body: Any = field(default_factory=lambda: answer(DEFAULT_TEXT))
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Pops planned replies in arrival order; records every request; tracks requests in flight."""

    def __init__(self) -> None:
        self.plan: deque[Reply] = deque()
        self.responder = None  # optional callable(json_body) -> Reply, used when the plan is empty
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.base_url = ""
        self.delay = 0.0  # seconds before each default reply (a model server's latency)
        self.stopped = False
        self._close = None  # set by serve(): stops listening

    def stop(self) -> None:
        """Stop like a killed server: new connections are refused, kept-alive ones dropped unanswered."""
        self.stopped = True
        if self._close is not None:
            threading.Thread(target=self._close, daemon=True).start()

    def add(self, *replies: Reply) -> None:
        self.plan.extend(replies)

    def next_reply(self, record: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            reply = self.plan.popleft() if self.plan else None
        if reply is None:
            reply = self.responder(record["json"]) if self.responder else Reply(delay=self.delay)
        return reply


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        fake: FakeServer = self.server.fake  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fake.stopped:
            self.close_connection = True  # no answer: the client sees the connection drop
            return
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = fake.next_reply({"path": self.path, "headers": headers, "json": parsed})
        try:
            time.sleep(reply.delay)
            body = reply.body
            data = body.encode() if isinstance(body, str) else body
            data = data if isinstance(data, bytes) else json.dumps(data).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout tests)
            self.close_connection = True
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # broken pipes after client timeouts are expected


@contextmanager
def serve(delay: float = 0.0) -> Iterator[FakeServer]:
    """A running stub server for the length of the block; its FakeServer is yielded. `delay`: seconds
    before each default reply."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.fake = FakeServer()  # type: ignore[attr-defined]
    httpd.fake.delay = delay
    httpd.fake._close = lambda: (httpd.shutdown(), httpd.server_close())
    httpd.fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.fake
    finally:
        httpd.shutdown()
        httpd.server_close()
