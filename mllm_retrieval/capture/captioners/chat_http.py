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
        response, hint = post_once(client, url, payload, timeout, unreachable)
        if isinstance(response, httpx.Response):
            return response
        last = response
    return last


def post_once(
    client: httpx.Client, url: str, payload: dict[str, Any], timeout: float,
    unreachable: Callable[[httpx.TransportError], str],
) -> tuple[httpx.Response | str, str | None]:
    """One POST: (the response, None), or (why it should be retried, the Retry-After header if any)."""
    try:
        response = client.post(url, json=payload)
    except httpx.TimeoutException:
        return f"timed out after {timeout:g}s", None
    except httpx.TransportError as e:
        return unreachable(e), None
    if response.status_code in RETRY_STATUS:
        return f"HTTP {response.status_code}", response.headers.get("retry-after")
    return response, None
