"""LLM rewrite of composed queries against a stub OpenAI-compatible server on 127.0.0.1, and its fallbacks."""

from __future__ import annotations

import json
import socket

import pytest
from library_helpers import PARK, add_library
from stub_server import Reply, answer, serve
from typer.testing import CliRunner

from mllm_retrieval.cli import app
from mllm_retrieval.composed.like import compose_like, resolve_reference, search_like
from mllm_retrieval.composed.rewrite import RewriteError, Rewriter, clean_answer, parse_spec
from mllm_retrieval.errors import MllmretError
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.searcher import Searcher

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("no_env_keys")

REF_TEXT = "dog, leash, park. A dog on a leash in a park."


@pytest.fixture
def server():
    with serve() as fake:
        yield fake


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rewriter(server, **kw) -> Rewriter:
    return Rewriter(server.base_url, "llama3", backoff=0.01, **kw)


def fill(store) -> dict[str, int]:
    return add_library(store, {**PARK, "cat": "Tags: cat, sofa\nCaption: A cat asleep on a sofa."})


@pytest.mark.parametrize("spec, model, expected", [
    ("http://127.0.0.1:8080/v1/llama3", None, ("http://127.0.0.1:8080/v1", "llama3")),
    ("http://h:1/v1/meta-llama/Llama-3.1-8B", None, ("http://h:1/v1", "meta-llama/Llama-3.1-8B")),
    ("https://h/api/v1/m/", None, ("https://h/api/v1", "m")),
    ("http://h:1/v1", "qwen/qwen3", ("http://h:1/v1", "qwen/qwen3")),
    ("http://h:1/v1/m", "m", ("http://h:1/v1", "m")),
    ("http://h:1/openai/", "m", ("http://h:1/openai", "m")),
])
def test_parse_spec(spec, model, expected):
    assert parse_spec(spec, model) == expected


@pytest.mark.parametrize("spec, model, message", [
    ("http://h:1/openai", None, "names no model"),
    ("http://h:1/v1/", None, "names no model"),
    ("http://h:1/v1/a", "b", "give one"),
    ("127.0.0.1:8080/v1/m", None, "http"),
    ("ftp://h/v1/m", None, "http"),
])
def test_parse_spec_errors(spec, model, message):
    with pytest.raises(MllmretError, match=message):
        parse_spec(spec, model)


def test_request_carries_the_prompt_with_caption_and_modification(server, monkeypatch):
    monkeypatch.setenv("MLLMRET_API_KEY", "secret")
    server.add(Reply(body=answer("A dog running on a beach.")))
    out = Rewriter.from_spec(server.base_url + "/llama3").rewrite(REF_TEXT, "on a beach, no leash")
    assert out == "A dog running on a beach."
    [req] = server.requests
    assert req["path"] == "/v1/chat/completions" and req["headers"]["authorization"] == "Bearer secret"
    body = req["json"]
    assert body["model"] == "llama3" and body["temperature"] == 0 and body["max_tokens"] > 0
    [message] = body["messages"]
    assert message["role"] == "user"
    assert f"Reference photo: {REF_TEXT}" in message["content"]
    assert "Requested change: on a beach, no leash" in message["content"]


def test_a_prompt_file_needs_both_placeholders(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Describe {caption}.")
    with pytest.raises(MllmretError, match=r"lacks \{modification\}"):
        Rewriter("http://127.0.0.1:9/v1", "m", prompt=str(bad))
    good = tmp_path / "good.txt"
    good.write_text("{modification} applied to {caption}")
    custom = Rewriter("http://127.0.0.1:9/v1", "m", prompt=str(good))
    assert custom.prompt_for("a cat", "red") == "red applied to a cat"


@pytest.mark.parametrize("raw, expected", [
    ("A dog on a beach.", "A dog on a beach."),
    ('  "A dog on a beach."  ', "A dog on a beach."),
    ("Description: A dog on a beach.\nThis keeps the dog.", "A dog on a beach."),
    ("Here is the description:\n\n**A dog on a beach.**", "A dog on a beach."),
    ("<think>The user wants no leash.</think>\nA dog on a beach.", "A dog on a beach."),
    ([{"type": "text", "text": "A dog "}, {"type": "text", "text": "on a beach."}], "A dog on a beach."),
])
def test_answers_are_cleaned_to_one_description(server, raw, expected):
    server.add(Reply(body=answer(raw)))
    assert rewriter(server).rewrite(REF_TEXT, "on a beach") == expected


@pytest.mark.parametrize("replies, message, requests", [
    ([Reply(500, {"error": "boom"}), Reply(500, {"error": "boom"})], "failed 2 time.*HTTP 500", 2),
    ([Reply(400, {"error": {"message": "bad"}})], "HTTP 400", 1),
    ([Reply(body=answer(""))], "no description", 1),
    ([Reply(body=answer(None))], "no description", 1),
    ([Reply(body=answer("<think>hmm</think>  "))], "no description", 1),
    ([Reply(body="not json{")], "unexpected answer", 1),
    ([Reply(body={"choices": []})], "unexpected answer", 1),
    ([Reply(delay=1.0), Reply(delay=1.0)], "timed out", 2),
])
def test_failures_raise_rewrite_errors_after_at_most_one_retry(server, replies, message, requests):
    server.add(*replies)
    with pytest.raises(RewriteError, match=message):
        rewriter(server, timeout=0.3, retries=5).rewrite(REF_TEXT, "on a beach")
    assert len(server.requests) == requests


def test_one_retry_recovers(server):
    server.add(Reply(503, {"error": "busy"}), Reply(body=answer("A dog on a beach.")))
    assert rewriter(server).rewrite(REF_TEXT, "on a beach") == "A dog on a beach."
    assert len(server.requests) == 2


def test_server_down_is_a_rewrite_error():
    with pytest.raises(RewriteError, match="cannot connect"):
        Rewriter(f"http://127.0.0.1:{closed_port()}/v1", "m", backoff=0.01).rewrite(REF_TEXT, "x")


def test_the_rewrite_becomes_the_query(server, store):
    ids = fill(store)
    server.add(Reply(body=answer("A cat asleep on a sofa.")))
    result = search_like(Searcher(store), resolve_reference(store, ids["ref"]), "a cat on a sofa instead",
                         rewriter=rewriter(server))
    c = result.composition
    assert c.rewrite == c.text == "A cat asleep on a sofa." and c.warning is None
    assert c.terms == ("cat", "asleep", "sofa") and set(c.weights) == {1.0}
    assert (c.kept, c.added) == ((), ("cat", "asleep", "sofa"))
    assert c.dropped == ("dog", "leash", "park")
    assert [r.image_id for r in result.results] == [ids["cat"]]  # the rules would have kept dog and park


def test_removed_words_stay_excluded_unless_the_rewrite_says_them(server, store):
    ids = fill(store)
    server.add(Reply(body=answer("A dog in a park.")), Reply(body=answer("A dog on a leash in the grass.")))
    ref = resolve_reference(store, ids["ref"])
    first = search_like(Searcher(store), ref, "without the leash", rewriter=rewriter(server))
    assert first.composition.exclude == ("leash",) and first.composition.kept == ("dog", "park")
    assert ids["leashed"] not in [r.image_id for r in first.results]
    second = search_like(Searcher(store), ref, "without the leash", rewriter=rewriter(server))
    assert second.composition.exclude == () and ids["leashed"] in [r.image_id for r in second.results]


@pytest.mark.parametrize("replies", [
    [Reply(500, {"error": "boom"}), Reply(500, {"error": "boom"})],
    [Reply(body=answer(""))],
    [Reply(body=answer("the of and"))],  # words, but none to search for
])
def test_failures_fall_back_to_the_rules_with_a_warning(server, store, replies):
    ids = fill(store)
    server.add(*replies)
    ref = resolve_reference(store, ids["ref"])
    result = search_like(Searcher(store), ref, "without the leash", rewriter=rewriter(server))
    c = result.composition
    assert c.rewrite is None and "rule-based composition" in c.warning and "\n" not in c.warning
    rules = compose_like(ref.text, "without the leash")
    assert (c.terms, c.weights, c.exclude, c.text) == (rules.terms, rules.weights, rules.exclude, rules.text)
    assert result.results and ids["leashed"] not in [r.image_id for r in result.results]


# the command line
@pytest.fixture
def db(tmp_path):
    path = tmp_path / "lib.db"
    with Store(path) as store:
        fill(store)
    return path


def test_cli_rewrite_is_shown_and_used(server, db):
    server.add(Reply(body=answer("A cat asleep on a sofa.")))
    url = server.base_url + "/meta-llama/Llama-3.1-8B"
    r = runner.invoke(app, ["search", "--like", "1", "a", "cat", "instead", "--rewrite-with", url,
                            "--mode", "keyword", "--db", str(db)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[1] == "rewrite: A cat asleep on a sofa." and "cat.jpg" in lines[-1] and r.stderr == ""
    assert server.requests[0]["json"]["model"] == "meta-llama/Llama-3.1-8B"
    server.add(Reply(body=answer("A cat asleep on a sofa.")))
    r = runner.invoke(app, ["search", "--like", "1", "a", "cat", "instead", "--rewrite-with", server.base_url,
                            "--rewrite-model", "m", "--json", "--mode", "keyword", "--db", str(db)])
    first = json.loads(r.stdout.splitlines()[0])
    assert first["rewrite"] == "A cat asleep on a sofa." and first["warning"] is None
    assert first["added"] == ["cat", "asleep", "sofa"]


@pytest.mark.parametrize("plan", ["down", "500", "empty"])
def test_cli_rewrite_failure_warns_on_one_line_and_falls_back(server, db, plan):
    url = f"http://127.0.0.1:{closed_port()}/v1/m" if plan == "down" else server.base_url + "/m"
    if plan == "500":
        server.add(Reply(500, {"error": "boom"}), Reply(500, {"error": "boom"}))
    elif plan == "empty":
        server.add(Reply(body=answer("   ")))
    r = runner.invoke(app, ["search", "--like", "1", "without", "the", "leash", "--rewrite-with", url,
                            "--json", "--mode", "keyword", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("Warning: rewrite failed") and r.stderr.count("\n") == 1
    first, *hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert first["rewrite"] is None and first["warning"] in r.stderr and first["excluded"] == ["leash"]
    assert hits and all("leash" not in h["path"] for h in hits)


def test_clean_answer_keeps_unicode_and_cuts_long_answers():
    assert clean_answer("“Un chien sur la plage.”") == "Un chien sur la plage."
    assert len(clean_answer("dog " * 500)) == 500
