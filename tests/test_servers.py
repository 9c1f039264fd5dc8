"""One run over several OpenAI-compatible servers: spread by load, failover, one run identity."""

from __future__ import annotations

import json

import pytest
from cli_helpers import mllmret
from stub_server import Reply, serve
from test_rewrite import closed_port
from test_streaming import captioner, stored_sizes_match_tiles

from mllm_retrieval.capture.captioners.servers import ServerPool, split_urls
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.capture.tiling import Box
from mllm_retrieval.library.store import Store, run_key

pytestmark = pytest.mark.usefixtures("no_env_keys")

PROMPT = load_prompt()


def captions(store) -> int:
    return store.db.execute("SELECT count(*) FROM captions").fetchone()[0]


def test_split_urls_takes_repeats_and_comma_lists():
    assert split_urls(["http://a/v1/, http://b/v1", "http://a/v1"]) == ["http://a/v1", "http://b/v1"]
    assert split_urls("http://a/v1") == ["http://a/v1"] and split_urls(None) == []


def test_pool_prefers_the_least_loaded_server_that_is_up():
    pool = ServerPool(["a", "b"], backoff=10)
    first, second = pool.acquire(set()), pool.acquire(set())
    assert {first.url, second.url} == {"a", "b"}
    pool.release(first, ok=False)  # a failed: set aside while b is busy
    assert pool.acquire(set()).url == second.url
    assert pool.acquire({second.url}).url == first.url  # a request b already failed goes back to a


def test_requests_spread_over_two_servers(store, many_photos):
    with serve(delay=0.05) as a, serve(delay=0.05) as b:
        s = caption_paths(store, [many_photos], captioner([a.base_url, b.base_url], concurrency=4), PROMPT,
                          CaptionSettings(batch_size=4), progress=False)
        assert s.captioned_tiles == 30
        assert len(a.requests) + len(b.requests) == 30
        assert min(len(a.requests), len(b.requests)) >= 10  # by load, not all on the first


def test_a_server_drained_mid_run_leaves_the_work_to_the_other(store, many_photos):
    with serve() as a, serve() as b:
        a.responder = lambda body: Reply() if len(a.requests) <= 3 else Reply(status=503)
        s = caption_paths(store, [many_photos], captioner(f"{a.base_url},{b.base_url}", concurrency=3),
                          PROMPT, CaptionSettings(batch_size=4), progress=False)
        assert s.captioned_tiles == 30 == captions(store)
        assert len(b.requests) >= 27


def test_a_server_stopped_mid_run_leaves_the_work_to_the_other(store, many_photos):
    with serve(delay=0.02) as a, serve(delay=0.02) as b:
        def stop_after_five(body):
            if len(a.requests) == 5:
                a.stop()
            return Reply(delay=0.02)

        a.responder = stop_after_five
        s = caption_paths(store, [many_photos], captioner([a.base_url, b.base_url], concurrency=4), PROMPT,
                          CaptionSettings(batch_size=4), progress=False)
        assert a.stopped and s.captioned_tiles == 30 == captions(store)
        assert len(b.requests) >= 25


def test_an_unreachable_server_is_skipped(store, many_photos):
    with serve() as b:
        dead = f"http://127.0.0.1:{closed_port()}/v1"
        caption_paths(store, [many_photos], captioner([dead, b.base_url], concurrency=2), PROMPT,
                      CaptionSettings(batch_size=4), progress=False)
        assert captions(store) == 30 and len(b.requests) == 30


def test_answers_from_two_servers_go_to_their_tiles(store, many_photos):
    from test_streaming import by_size

    with serve() as a, serve() as b:
        a.responder = b.responder = by_size
        caption_paths(store, [many_photos], captioner([a.base_url, b.base_url], concurrency=4), PROMPT,
                      CaptionSettings(batch_size=3), progress=False)
    assert stored_sizes_match_tiles(store)


def test_the_run_does_not_depend_on_the_servers(store, many_photos):
    with serve() as a, serve() as b:
        one = caption_paths(store, [many_photos], captioner(a.base_url), PROMPT, progress=False)
        moved = caption_paths(store, [many_photos], captioner(b.base_url), PROMPT, progress=False)
        both = caption_paths(store, [many_photos], captioner([a.base_url, b.base_url]), PROMPT,
                             progress=False)
        assert one.run_id == moved.run_id == both.run_id
        assert (moved.captioned_tiles, both.captioned_tiles, len(b.requests)) == (0, 0, 0)


def test_cli_takes_base_url_twice(tmp_path, many_photos):
    with serve(delay=0.05) as a, serve(delay=0.05) as b:
        mllmret("caption", many_photos, "--backend", "openai", "--model", "m", "--base-url", a.base_url,
                "--base-url", b.base_url, "--concurrency", "4", "--no-embed", "-q", "--db", tmp_path / "x.db")
        assert a.requests and b.requests and len(a.requests) + len(b.requests) == 30


def test_old_server_runs_are_rekeyed_and_merged(tmp_path):
    path = tmp_path / "old.db"
    with Store(path) as s:
        image = s.add_image("a" * 64, "/p.jpg", 10, 10)
        [(tile, _)] = s.ensure_tiles(image, [None], 10, 10)
        [(tile2, _)] = s.ensure_tiles(image, [Box(0, 0, 5, 5)], 10, 10)
        s.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm004_runs_keyed_without_server'")
        for port, tiles in ((8000, [tile]), (8001, [tile, tile2])):  # one model, two servers: two old runs
            params = {"max_new_tokens": 160, "temperature": 0, "base_url": f"http://h:{port}/v1"}
            s.db.execute(
                "INSERT INTO runs (key, backend, model, prompt, params, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [run_key("openai", "m", params, "P")[0], "openai", "m", "P", json.dumps(params), "t"])
            run_id = s.db.execute("SELECT max(id) FROM runs").fetchone()[0]
            for t in tiles:
                s.db.execute("INSERT INTO captions (tile_id, run_id, raw, tags, caption, created_at) "
                             "VALUES (?, ?, ?, '[]', '', 't')", [t, run_id, f"from {port}"])
        s.db.conn.commit()
    with Store(path) as s:
        runs = s.db.execute("SELECT id, key FROM runs").fetchall()
        assert len(runs) == 1
        assert runs[0][1] == run_key("openai", "m", {"max_new_tokens": 160, "temperature": 0}, "P")[0]
        rows = s.db.execute("SELECT tile_id, raw FROM captions ORDER BY tile_id").fetchall()
        assert rows == [(tile, "from 8000"), (tile2, "from 8001")]  # one caption per tile, none lost
