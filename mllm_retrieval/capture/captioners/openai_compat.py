"""Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, ...)."""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image

from ...errors import BackendError
from .chat_http import RETRY_STATUS as RETRY_STATUS  # re-exported: it was defined here
from .chat_http import post_once
from .servers import ServerPool, split_urls

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
MAX_SIDE = 2048


class OpenAICaptioner:
    """Sends each image as a base64 data URL to /chat/completions, a few at a time."""

    backend = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 4,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_new_tokens: int = 256,
    ) -> None:
        if not model:
            raise BackendError("--backend openai needs --model: the model name the server serves")
        self.model_id = model
        self.base_urls = (split_urls(base_url) or split_urls(
            os.environ.get("MLLMRET_BASE_URL") or os.environ.get("OPENAI_BASE_URL")) or [DEFAULT_BASE_URL])
        self.base_url = self.base_urls[0]
        self.pool = ServerPool(self.base_urls, backoff)
        self.api_key = api_key or os.environ.get("MLLMRET_API_KEY") or os.environ.get(
            "OPENAI_API_KEY", ""
        )
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_new_tokens = max_new_tokens
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def params(self) -> dict[str, Any]:
        """Settings that change the output; which servers answered does not (same model name)."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": 0}

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        """One request per image, at most `concurrency` in flight."""
        with self._new_client() as client:
            if len(images) == 1 or self.concurrency == 1:
                return [self._one(client, im, prompt) for im in images]
            with ThreadPoolExecutor(self.concurrency) as pool:
                return list(pool.map(lambda im: self._one(client, im, prompt), images))

    def describe_one(self, image: Image.Image, prompt: str) -> str:
        """One image's answer on a client shared across threads: the pipeline keeps `concurrency` of
        these in flight across photos (capture/streaming.py)."""
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
        return self._one(self._client, image, prompt)

    def close(self) -> None:
        """Close the shared client of `describe_one`."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _new_client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=max(100, self.concurrency),
                              max_keepalive_connections=max(20, self.concurrency))
        return httpx.Client(timeout=self.timeout, headers=headers, limits=limits)

    def _one(self, client: httpx.Client, image: Image.Image, prompt: str) -> str:
        payload = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": data_url(image)}},
            ]}],
            "max_tokens": self.max_new_tokens,
            "temperature": 0,
        }
        tried: set[str] = set()
        last, hint, rounds = "", None, 0
        attempts = self.retries + len(self.pool.servers)
        for _ in range(attempts):
            server = self.pool.acquire(tried)
            if server.url in tried:  # every server failed this request: back off before the next round
                rounds += 1
                time.sleep(self._delay(rounds, hint))
            tried.add(server.url)
            url = f"{server.url}/chat/completions"
            ok = False
            try:
                response, hint = post_once(client, url, payload, self.timeout,
                                           lambda e, u=server.url: f"cannot connect to {u} ({e})")
                ok = not isinstance(response, str)
            finally:
                self.pool.release(server, ok)
            if isinstance(response, str):
                last = response
                continue
            if response.status_code >= 400:
                raise BackendError(
                    f"{url} refused the request: HTTP {response.status_code} {_message(response)}")
            return _content(response)
        where = (f"{self.base_url}/chat/completions" if len(self.base_urls) == 1
                 else f"every server ({', '.join(self.base_urls)})")
        raise BackendError(f"{where} failed {attempts} times, last: {last}; rerun to resume")

    def _delay(self, attempt: int, hint: str | None) -> float:
        if hint and hint.replace(".", "", 1).isdigit():
            return min(float(hint), 60.0)
        return self.backoff * 2 ** (attempt - 1)


def data_url(image: Image.Image) -> str:
    """A JPEG data URL of the image, longest side capped at MAX_SIDE."""
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _content(response: httpx.Response) -> str:
    try:
        message = response.json()["choices"][0]["message"]
        content = message.get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise BackendError(f"unexpected answer from server: {response.text[:200]!r}") from e
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return str(content).strip()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if not isinstance(body, dict):
        return str(body)[:300]
    err = body.get("error", body.get("message", body))
    if isinstance(err, dict):
        err = err.get("message", err)
    return str(err)[:300]
