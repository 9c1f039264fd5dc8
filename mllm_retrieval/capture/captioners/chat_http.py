"""POST to an OpenAI-compatible server with retries: shared by the captioner and the query rewriter."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def post_with_retries(
    client: httpx.Client,
    url: str,
    payload: dict[str, Any],
    retries: int,
    delay: Callable[[int, str | None], float],
    timeout: float,
    unreachable: Callable[[httpx.TransportError], str],
) -> httpx.Response | str:
    """POST `payload` as JSON to `url`, up to `retries` + 1 times.

    Timeouts, transport errors and the statuses in RETRY_STATUS are retried after sleeping
    `delay(attempt, retry_after)` seconds, where `retry_after` is the Retry-After header of the previous
    answer, if it was a retryable status that gave one. Returns the first other response (an HTTP error
    included: the caller words it) or, when every attempt failed, the text of the last failure, made with
    `timeout` for a timeout and `unreachable(error)` for a transport error. Other exceptions propagate."""
    last, hint = "", None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(delay(attempt, hint))
            hint = None
        try:
            response = client.post(url, json=payload)
        except httpx.TimeoutException:
            last = f"timed out after {timeout:g}s"
            continue
        except httpx.TransportError as e:
            last = unreachable(e)
            continue
        if response.status_code in RETRY_STATUS:
            last = f"HTTP {response.status_code}"
            hint = response.headers.get("retry-after")
            continue
        return response
    return last
