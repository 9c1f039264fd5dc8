"""OpenAICaptioner against a scriptable OpenAI-compatible server on 127.0.0.1 (stdlib only)."""

from __future__ import annotations

import base64
import io
import random
import socket
import time
from typing import Any

import pytest
from PIL import Image
from stub_server import DEFAULT_TEXT, FakeServer, Reply, answer, serve

from mllm_retrieval.capture.captioners.base import get_captioner
from mllm_retrieval.capture.captioners.openai_compat import MAX_SIDE, OpenAICaptioner
from mllm_retrieval.errors import BackendError

pytestmark = pytest.mark.usefixtures("no_env_keys")

PREFIX = "data:image/jpeg;base64,"


@pytest.fixture
def server():
    with serve() as fake:
        yield fake


@pytest.fixture
def base_url(server: FakeServer) -> str:
    return server.base_url


def make(base_url: str, **kw: Any) -> OpenAICaptioner:
    kw = {"model": "test-model", "base_url": base_url, "backoff": 0.01, "retries": 2, **kw}
    return OpenAICaptioner(**kw)


def red(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, "red")


def image_of(body: dict) -> Image.Image:
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith(PREFIX)
    im = Image.open(io.BytesIO(base64.b64decode(url[len(PREFIX):])))
    im.load()
    return im


def test_success_keeps_input_order_with_concurrency(server):
    rng = random.Random(0)
    widths = [40 + 8 * i for i in range(8)]

    def by_width(body: dict) -> Reply:
        return Reply(body=answer(f"width {image_of(body).width}"), delay=rng.uniform(0.02, 0.15))

    server.responder = by_width
    out = make(server.base_url, concurrency=3).describe([red((w, 32)) for w in widths], "describe")
    assert out == [f"width {w}" for w in widths]
    assert len(server.requests) == len(widths)
    assert 1 < server.max_in_flight <= 3


def test_request_shape(server):
    out = make(server.base_url, api_key="KEY", max_new_tokens=77).describe([red()], "Tag this photo.")
    assert out == [DEFAULT_TEXT]
    [req] = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer KEY"
    body = req["json"]
    assert body["model"] == "test-model"
    assert body["max_tokens"] == 77 and body["temperature"] == 0
    [message] = body["messages"]
    assert message["role"] == "user"
    assert {"type": "text", "text": "Tag this photo."} in message["content"]
    im = image_of(body)
    assert im.format == "JPEG" and im.size == (64, 48)


def test_large_image_is_capped_at_max_side(server):
    make(server.base_url).describe([red((MAX_SIDE * 2, 40))], "p")
    im = image_of(server.requests[0]["json"])
    assert im.format == "JPEG" and im.size == (MAX_SIDE, 20)


def test_no_authorization_header_without_key(server):
    make(server.base_url).describe([red()], "p")
    assert "authorization" not in server.requests[0]["headers"]


def test_api_key_from_env(server, monkeypatch):
    monkeypatch.setenv("MLLMRET_API_KEY", "envkey")
    make(server.base_url).describe([red()], "p")
    make(server.base_url, api_key="explicit").describe([red()], "p")
    assert [r["headers"]["authorization"] for r in server.requests] == ["Bearer envkey", "Bearer explicit"]


def test_base_url_from_env_and_registry(server, monkeypatch):
    monkeypatch.setenv("MLLMRET_BASE_URL", server.base_url + "/")
    cap = get_captioner("openai", model="m", backoff=0.01)
    assert cap.describe([red(), red()], "p") == [DEFAULT_TEXT] * 2
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}


def test_500_then_success(server):
    server.add(Reply(500, {"error": {"message": "boom"}}))
    assert make(server.base_url).describe([red()], "p") == [DEFAULT_TEXT]
    assert len(server.requests) == 2


def test_429_retry_after_zero_overrides_backoff(server):
    server.add(Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}))
    start = time.monotonic()
    assert make(server.base_url, backoff=5.0).describe([red()], "p") == [DEFAULT_TEXT]
    assert time.monotonic() - start < 2.0  # Retry-After: 0 was used, not the 5 s backoff
    assert len(server.requests) == 2


def test_retry_delay_rules(base_url):
    cap = make(base_url, backoff=0.5)
    assert cap._delay(1, None) == 0.5 and cap._delay(3, None) == 2.0
    assert cap._delay(2, "1.5") == 1.5 and cap._delay(1, "3600") == 60.0
    assert cap._delay(2, "Wed, 21 Oct 2015 07:28:00 GMT") == 1.0  # HTTP-date: falls back to backoff


def test_timeout_then_success(server):
    server.add(Reply(delay=1.5, body=answer("too late")))
    assert make(server.base_url, timeout=0.5).describe([red()], "p") == [DEFAULT_TEXT]
    assert len(server.requests) == 2


def test_all_attempts_time_out(server):
    server.add(Reply(delay=1.5), Reply(delay=1.5))
    with pytest.raises(BackendError, match="timed out"):
        make(server.base_url, timeout=0.5, retries=1).describe([red()], "p")
    assert len(server.requests) == 2


@pytest.mark.parametrize(("status", "message"), [(400, "image too large"), (401, "invalid api key")])
def test_client_error_fails_at_once(server, status, message):
    server.add(Reply(status, {"error": {"message": message}}))
    with pytest.raises(BackendError, match=f"HTTP {status}.*{message}"):
        make(server.base_url, retries=3).describe([red()], "p")
    assert len(server.requests) == 1


def test_client_error_with_plain_text_body(server):
    server.add(Reply(404, "no such route"))
    with pytest.raises(BackendError, match="HTTP 404 no such route"):
        make(server.base_url).describe([red()], "p")


@pytest.mark.parametrize("body", ['"bad request"', '["bad request"]'])
def test_client_error_with_non_object_json_body(server, body):
    server.add(Reply(400, body))
    with pytest.raises(BackendError, match="HTTP 400"):
        make(server.base_url).describe([red()], "p")


def test_retries_exhausted(server):
    server.add(*[Reply(503, {"error": {"message": "overloaded"}}) for _ in range(3)])
    with pytest.raises(BackendError, match=r"failed 3 times, last: HTTP 503"):
        make(server.base_url, retries=2).describe([red()], "p")
    assert len(server.requests) == 3


def test_error_stops_a_sequential_batch(server):
    server.add(Reply(), Reply(400, {"error": {"message": "bad image"}}))
    with pytest.raises(BackendError, match="bad image"):
        make(server.base_url, concurrency=1).describe([red(), red(), red()], "p")
    assert len(server.requests) == 2  # stops at the failing image


def test_content_parts_are_joined(server):
    parts = [{"type": "text", "text": "Tags: cat"}, {"type": "other"}, {"type": "text", "text": ", sofa "}]
    server.add(Reply(body=answer(parts)))
    assert make(server.base_url).describe([red()], "p") == ["Tags: cat, sofa"]


@pytest.mark.parametrize("body", ["not json{", {"choices": []}, {"result": "x"}, ["x"]])
def test_malformed_success_body(server, body):
    server.add(Reply(200, body))
    with pytest.raises(BackendError, match="unexpected answer"):
        make(server.base_url, retries=3).describe([red()], "p")
    assert len(server.requests) == 1


def test_empty_input(base_url):
    assert make(base_url, concurrency=4).describe([], "p") == []


@pytest.mark.parametrize("model", [None, ""])
def test_missing_model(model):
    with pytest.raises(BackendError, match="--model"):
        OpenAICaptioner(model=model, base_url="http://127.0.0.1:9/v1")


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match=r"failed 3 times, last: cannot connect"):
        make(f"http://127.0.0.1:{port}/v1", retries=2).describe([red()], "p")
