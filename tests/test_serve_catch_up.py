"""`serve` while the library changes: a search catches the keyword index up itself when little changed;
past that it answers at once from the index as it was (`stale`, with a notice) while a thread of its own
catches up; image lookups run on a thread of their own, so they never wait behind a search."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")

from fastapi.testclient import TestClient  # noqa: E402
from test_search import add  # noqa: E402
from web_fixtures import build_library  # noqa: E402

from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.web import library as web_library  # noqa: E402
from mllm_retrieval.web.app import create_app  # noqa: E402


def search(client: TestClient, q: str) -> dict:
    r = client.get("/api/search", params={"q": q, "mode": "keyword", "k": 50})
    assert r.status_code == 200, r.text
    return r.json()


def zebras(db, start: int, n: int) -> None:
    with Store(db) as store:
        for i in range(start, start + n):
            add(store, f"zebra{i}", f"Tags: zebra, stripes\nCaption: zebra number {i}.")


def wait_until_fresh(client: TestClient, q: str, want: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = search(client, q)
        if not page["stale"] and len(page["results"]) == want:
            return page
        time.sleep(0.05)
    raise AssertionError(f"never caught up: {page}")


def test_a_few_new_captions_are_searchable_at_once(tmp_path):
    db, _ = build_library(tmp_path)
    with TestClient(create_app(db, mode="keyword"), base_url="http://127.0.0.1") as client:
        assert search(client, "zebra")["results"] == []
        zebras(db, 0, 3)
        page = search(client, "zebra")
        assert len(page["results"]) == 3 and page["stale"] is False and page["notice"] is None


def test_many_new_captions_are_indexed_in_the_background_and_the_page_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(web_library, "INLINE_CATCH_UP", 2)
    db, _ = build_library(tmp_path)
    app = create_app(db, mode="keyword")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        search(client, "zebra")
        lib = app.state.library
        held = threading.Event()
        real_prepare = lib.searcher.index.prepare

        def slow_prepare(*args, **kwargs):  # the catch-up thread's reading and tokenising, held up
            held.wait(30)
            return real_prepare(*args, **kwargs)

        monkeypatch.setattr(lib.searcher.index, "prepare", slow_prepare)
        zebras(db, 0, 5)
        page = search(client, "zebra")
        assert page["stale"] is True and page["results"] == []
        assert "5 images changed" in page["notice"] and "\n" not in page["notice"]
        r = client.get(f"/api/images/{search(client, 'red')['results'][0]['image_id']}/thumbnail")
        assert r.status_code == 200 and not held.is_set()
        held.set()
        page = wait_until_fresh(client, "zebra", 5)
        assert page["notice"] is None
    with Store(db) as store:  # the catch-up was saved: a restart loads it
        from mllm_retrieval.search.index.store_index import StoreIndex

        index = StoreIndex(store)
        assert index._load(store.change_head()) and index.watermark == store.change_head()


def test_image_lookups_never_wait_behind_a_search(tmp_path, monkeypatch):
    db, _ = build_library(tmp_path)
    app = create_app(db, mode="keyword")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        image_id = search(client, "red")["results"][0]["image_id"]
        lib = app.state.library
        busy, done, finished = threading.Event(), threading.Event(), threading.Event()
        lib.pool.submit(lambda: (busy.set(), done.wait(30), finished.set()))  # the search thread, busy
        assert busy.wait(10)
        try:
            assert client.get(f"/api/images/{image_id}").status_code == 200
            assert client.get(f"/api/images/{image_id}/thumbnail").status_code == 200
            assert client.get("/api/library").json()["images"] >= 4
            assert not finished.is_set(), "answered while the search thread was still busy"
        finally:
            done.set()


def test_a_failed_background_catch_up_is_one_line_and_the_next_search_tries_again(tmp_path, monkeypatch,
                                                                                   caplog):
    monkeypatch.setattr(web_library, "INLINE_CATCH_UP", 2)
    db, _ = build_library(tmp_path)
    app = create_app(db, mode="keyword")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        search(client, "zebra")
        index = app.state.library.searcher.index
        real_prepare, calls = index.prepare, []

        def failing_once(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise OSError("disk I/O error\nsecond line")
            return real_prepare(*args, **kwargs)

        monkeypatch.setattr(index, "prepare", failing_once)
        zebras(db, 0, 5)
        assert search(client, "zebra")["stale"] is True
        wait_until_fresh(client, "zebra", 5)
    [line] = [r.getMessage() for r in caplog.records if "catch-up failed" in r.getMessage()]
    assert "disk I/O error second line" in line and "\n" not in line


def search_by_meaning(client: TestClient, q: str) -> dict:
    r = client.get("/api/search", params={"q": q, "mode": "semantic", "k": 50, "more_meaning": "true"})
    assert r.status_code == 200, r.text
    return r.json()


def test_new_text_is_embedded_off_the_search_thread_and_searches_by_meaning_go_on(tmp_path, monkeypatch):
    from test_fusion import FakeEmbedder

    db, _ = build_library(tmp_path)
    embedder = FakeEmbedder()
    app = create_app(db, mode="hybrid", embedder=embedder)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        before = search_by_meaning(client, "horse")  # the first search by meaning embeds the library
        assert before["stale"] is False and before["notice"] is None
        lib = app.state.library
        semantic = lib.searcher.loaded_semantic
        held, threads = threading.Event(), []
        real_prepare = semantic.prepare

        def slow_prepare(*args, **kwargs):  # the catch-up thread's embedding, held up
            threads.append(threading.current_thread().name)
            held.wait(30)
            return real_prepare(*args, **kwargs)

        monkeypatch.setattr(semantic, "prepare", slow_prepare)
        with Store(db) as store:
            add(store, "rider", "Caption: A man rides a horse across a bridge.")
        page = search_by_meaning(client, "horse")
        assert page["stale"] is True
        assert "1 images changed since the library was last embedded" in page["notice"]
        assert len(page["results"]) == len(before["results"]), "answered from the vectors as they were"
        assert not any("A man rides a horse" in t for t in embedder.encoded), "nothing embedded on the way"
        held.set()
        deadline = time.monotonic() + 30
        while (page := search_by_meaning(client, "horse"))["stale"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert page["notice"] is None and len(page["results"]) == len(before["results"]) + 1
        assert threads and all(name == "mllmret-catch-up" for name in threads)
    with Store(db) as store:  # the embedding was saved: a restart loads it and has nothing left to embed
        from mllm_retrieval.search.index.semantic_index import SemanticIndex

        assert SemanticIndex(store, embedder=FakeEmbedder()).backlog() == 0
