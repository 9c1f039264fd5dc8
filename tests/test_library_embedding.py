"""Embedding at ingest: import/caption embed what they store, `--no-embed` skips, `mllmret embed` catches
up (resumable), and a search by meaning never waits for a big backlog: it answers by keyword and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import mllmret
from test_fusion import FakeEmbedder
from test_search import add

from mllm_retrieval.library import embed as library_embedding
from mllm_retrieval.library.embed import embed_library
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index.semantic_index import SemanticIndex
from mllm_retrieval.search.searcher import Searcher


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tiny_embedder import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-ingest"))


def captions_file(tmp_path: Path, n: int) -> Path:
    words = ["cat on a sofa", "dog in the street", "red car at night", "pigeon on a bridge", "bowl of fruit"]
    lines = [{"image_id": f"img{i}", "text": f"Tags: {words[i % 5]}\nCaption: A {words[i % 5]}."}
             for i in range(n)]
    path = tmp_path / "captions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def backlog(db: Path, embedder) -> int:
    with Store(db) as store:
        return SemanticIndex(store, embedder=embedder).backlog()


def test_import_embeds_what_it_stores_and_no_embed_skips_it(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("MLLMRET_EMBEDDER", str(tiny_model))
    db, plain = tmp_path / "a.db", tmp_path / "b.db"
    r = mllmret("import", captions_file(tmp_path, 12), "--db", db, "-q")
    assert "embedded 12 images for search by meaning (12 in all" in r.output
    assert backlog(db, str(tiny_model)) == 0
    r = mllmret("import", captions_file(tmp_path, 12), "--db", plain, "--no-embed")
    assert "embedded" not in r.output and backlog(plain, str(tiny_model)) == 12


def test_hybrid_search_answers_by_keyword_until_embedded(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("MLLMRET_EMBEDDER", str(tiny_model))
    monkeypatch.setattr(library_embedding, "SEARCH_BACKLOG", 5)
    db = tmp_path / "lib.db"
    mllmret("import", captions_file(tmp_path, 12), "--db", db, "--no-embed")
    r = mllmret("search", "cat", "--json", "--db", db)
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert hits and {h["via"] for h in hits} == {"keyword"}
    assert "Note: answered by keyword only: 12 images have no embedding yet; run `mllmret embed`" in r.stderr
    assert backlog(db, str(tiny_model)) == 12  # the search did not embed them
    r = mllmret("embed", "--db", db, "-q")
    assert "embedded 12 images" in r.output
    assert "embedded 0 images" in mllmret("embed", "--db", db, "-q").output  # nothing left: resumable
    r = mllmret("search", "cat", "--json", "--db", db)
    assert "Note:" not in r.stderr and "both" in {json.loads(line)["via"] for line in r.stdout.splitlines()}


def test_a_small_backlog_is_embedded_by_the_search_itself(tmp_path):
    fake = FakeEmbedder()
    with Store(tmp_path / "s.db") as store:
        add(store, "a", "Tags: cat\nCaption: A cat.")
        searcher = Searcher(store, mode="hybrid", embedder=fake, max_backlog=1)
        assert [r.via for r in searcher.search("cat")] == ["both"] and searcher.notice is None
        for name in "bcd":
            add(store, name, f"Tags: dog {name}\nCaption: A dog.")
        assert searcher.search("cat", mode="semantic")[0].via == "keyword"
        assert searcher.notice and "3 images have no embedding yet" in searcher.notice
        assert embed_library(store, fake).embedded == 3
        assert searcher.search("cat", mode="semantic")[0].via == "both" and searcher.notice is None


def test_a_searcher_sees_vectors_another_process_saved(tmp_path):
    fake = FakeEmbedder()
    with Store(tmp_path / "x.db") as store:
        add(store, "a", "Tags: cat\nCaption: A cat.")
        searcher = Searcher(store, mode="hybrid", embedder=fake, max_backlog=0)
        assert searcher.search("cat")[0].via == "keyword" and searcher.notice
        with Store(tmp_path / "x.db") as other:  # `mllmret embed` or serve's embedding thread
            assert embed_library(other, fake).embedded == 1
        assert searcher.search("cat")[0].via == "both" and searcher.notice is None


def test_serve_embeds_in_the_background(tmp_path):
    fake = FakeEmbedder()
    with Store(tmp_path / "y.db") as store:
        add(store, "a", "Tags: cat\nCaption: A cat.")
    library_embedding.embed_in_background(tmp_path / "y.db", fake).join(60)
    with Store(tmp_path / "y.db") as store:
        assert SemanticIndex(store, embedder=fake).backlog() == 0
