"""Hybrid feedback: the first results refine both queries, and the words it added are shown."""

from __future__ import annotations

import numpy as np
import pytest
from test_eval_matches_search import BagOfWords
from test_search import add
from typer.testing import CliRunner

from mllm_retrieval.cli import app
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.expansion import FEEDBACK_SHARE, Feedback, rocchio
from mllm_retrieval.search.searcher import Searcher

PIGEONS = ["A pigeon on a bridge.", "Two pigeons sit on the old bridge.", "A pigeon walks under a bridge.",
           "A grey pigeon on a bridge railing."]
BIRD = "A bird on a bridge over a river."  # no "pigeon": only feedback's "bridge" finds it by keyword
FILLER = ["A red car on a street.", "A cat on a sofa.", "Snow on a mountain.", "A plate of food on a table.",
          "A man at night.", "A woman by a lake.", "A dog in the snow.", "A table in a kitchen."]


class Words(BagOfWords):
    """BagOfWords with this file's words, so pigeon, bridge and bird are dimensions of their own."""

    vocab = ["pigeon", "pigeons", "bridge", "bird", "river", "car", "street", "cat", "sofa", "snow",
             "mountain", "plate", "food", "table", "man", "night", "woman", "lake", "dog", "kitchen"]


def fill(store) -> dict[str, int]:
    ids = {}
    for i, text in enumerate(PIGEONS):
        ids[f"pigeon{i}"] = add(store, f"pigeon{i}", f"Caption: {text}")
    ids["bird"] = add(store, "bird", f"Caption: {BIRD}")
    for i in range(70):  # enough images that four of them are a small share (expansion.FEEDBACK_SHARE)
        add(store, f"other{i}", f"Caption: {FILLER[i % len(FILLER)]}")
    return ids


@pytest.fixture
def library(store):
    return store, fill(store)


def test_feedback_adds_the_first_results_words_and_says_which(library):
    store, ids = library
    s = Searcher(store, mode="hybrid", embedder=Words())
    results = s.search("pigeon", k=10)
    assert "bridge" in s.suggested and "pigeon" not in s.suggested
    by_id = {r.image_id: r for r in results}
    assert {ids[f"pigeon{i}"] for i in range(4)} <= set(list(by_id)[:4])  # the query's own matches lead
    bird = by_id[ids["bird"]]
    assert bird.matched == () and bird.bm25 is not None  # held by the keyword ranking through "bridge"

    plain = Searcher(store, mode="hybrid", embedder=Words(), feedback=False)
    found = {r.image_id: r for r in plain.search("pigeon", k=10)}
    assert plain.suggested == () and (ids["bird"] not in found or found[ids["bird"]].bm25 is None)


def test_a_small_library_gets_no_feedback(store):
    for i, text in enumerate(PIGEONS + [BIRD]):
        add(store, f"img{i}", f"Caption: {text}")
    assert Feedback().first(5) == 0 and Feedback().first(FEEDBACK_SHARE * 30) == 30
    with_feedback = Searcher(store, mode="hybrid", embedder=Words())
    without = Searcher(store, mode="hybrid", embedder=Words(), feedback=False)
    first = [r.image_id for r in with_feedback.search("pigeon")]
    assert first == [r.image_id for r in without.search("pigeon")]
    assert with_feedback.suggested == ()


def test_keyword_mode_refines_only_when_asked(library):
    store, ids = library
    plain = Searcher(store, mode="keyword")
    assert {r.image_id for r in plain.search("pigeon", k=10)} == {ids[f"pigeon{i}"] for i in range(4)}
    assert plain.suggested == ()
    refined = Searcher(store, mode="keyword", feedback=True)
    found = [r.image_id for r in refined.search("pigeon", k=10)]
    assert found[:4] != [] and set(found[:4]) == {ids[f"pigeon{i}"] for i in range(4)}
    assert ids["bird"] in found and "bridge" in refined.suggested


def test_rocchio_moves_the_query_towards_the_feedback_at_unit_length():
    q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    moved = rocchio(q, np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), beta=1.0)
    assert np.allclose(moved, [2 ** -0.5, 2 ** -0.5, 0.0]) and moved.dtype == np.float32
    assert np.array_equal(rocchio(q, np.zeros((0, 3))), q)


def test_cli_prints_the_words_feedback_added(tmp_path, monkeypatch):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        fill(store)
    monkeypatch.setattr("mllm_retrieval.search.embedding.get_embedder", lambda embedder=None: Words())
    monkeypatch.setattr("mllm_retrieval.search.embedding.meaning_unavailable", lambda embedder=None: None)
    runner = CliRunner()
    assert runner.invoke(app, ["embed", "--db", str(db)]).exit_code == 0
    r = runner.invoke(app, ["search", "pigeon", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "Related words (added by feedback):" in r.stderr and "bridge" in r.stderr.split("feedback):")[1]
    r = runner.invoke(app, ["search", "pigeon", "--db", str(db), "--no-feedback"])
    assert r.exit_code == 0 and "Related words" not in r.stderr


def test_an_image_only_feedback_words_match_counts_as_meaning_only_for_the_cut_off(library):
    store, ids = library
    s = Searcher(store, mode="hybrid", embedder=Words(), min_similarity=0.8)
    found = {r.image_id for r in s.search("pigeon", k=20)}
    assert "bridge" in s.suggested and ids["bird"] not in found and s.hidden >= 1
    assert {ids[f"pigeon{i}"] for i in range(4)} <= found  # query-word matches always stay
