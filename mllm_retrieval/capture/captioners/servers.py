"""Several OpenAI-compatible servers behind one captioner: least outstanding requests, failover.

Each request goes to the server with the fewest requests outstanding; a server that fails (timeout,
connection refused, 429/5xx) is set aside for a short, growing cool-down and the request is tried on
another one. Only when every server has failed for a request does it wait (the captioner's backoff)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

MAX_COOLDOWN = 30.0


@dataclass
class Server:
    """One server and what the pool knows of it."""

    url: str
    outstanding: int = 0
    served: int = 0
    failures: int = 0  # in a row
    down_until: float = 0.0


def split_urls(values: str | Iterable[str] | None) -> list[str]:
    """Server URLs from a string or strings, each possibly a comma list; trailing slashes dropped."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    urls = [u.strip().rstrip("/") for v in values for u in str(v).split(",")]
    return list(dict.fromkeys(u for u in urls if u))


class ServerPool:
    """Picks a server per request and keeps count of outstanding requests and failures."""

    def __init__(self, urls: list[str], backoff: float = 1.0) -> None:
        self.servers = [Server(u) for u in urls]
        self.backoff = backoff
        self._lock = threading.Lock()

    def acquire(self, tried: set[str]) -> Server:
        """The least loaded server that is up and was not tried for this request; else the one back
        soonest. Its outstanding count goes up until `release`."""
        now = time.monotonic()
        with self._lock:
            fresh = [s for s in self.servers if s.url not in tried] or self.servers
            up = [s for s in fresh if s.down_until <= now]
            pick = (min(up, key=lambda s: s.outstanding) if up
                    else min(fresh, key=lambda s: s.down_until))
            pick.outstanding += 1
            return pick

    def release(self, server: Server, ok: bool) -> None:
        """The request on `server` is over: a success clears its failures, a failure sets it aside."""
        with self._lock:
            server.outstanding -= 1
            if ok:
                server.served += 1
                server.failures = 0
                server.down_until = 0.0
            else:
                server.failures += 1
                server.down_until = time.monotonic() + min(MAX_COOLDOWN,
                                                           self.backoff * 2 ** (server.failures - 1))
