"""Rank fusion on hand-computed cases, and filters in every search mode on a small hand-made library.

The library searches with a fake embedder (words -> concept vectors, no torch), so "person" is close to
"man" and "woman", "tv" to "television", "couch" to "sofa": the cases issue 7 names.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_search import add

from mllm_retrieval.errors import MllmretError
from mllm_retrieval.search.fusion import competition_ranks, fuse, fused_scores
from mllm_retrieval.search.query import parse_query
from mllm_retrieval.search.searcher import Searcher
from mllm_retrieval.search.text import stem, surface_words, tokenize

INF = -np.inf


def test_competition_ranks_share_the_best_rank_of_a_tie():
    assert competition_ranks(np.array([3.0, 5.0, 3.0, INF, 1.0])).tolist() == [2, 1, 2, 0, 4]
    assert competition_ranks(np.array([INF, INF])).tolist() == [0, 0]


def test_rrf_hand_computed():
    keyword = np.array([2.0, INF, 1.0, INF])
    semantic = np.array([0.1, 0.9, 0.5, INF])
    fused = fused_scores(keyword, semantic)
    assert fused[0] == pytest.approx(1 / 61 + 1 / 63)
    assert fused[1] == pytest.approx(1 / 61)
    assert fused[2] == pytest.approx(1 / 62 + 1 / 62)
    assert fused[3] == -np.inf  # in no ranking


def naive_rrf(rankings, k=60):
    """RRF straight from its definition: sum of 1 / (k + rank), a tie sharing its best rank."""
    out = np.full(len(rankings[0]), -np.inf)
    for scores in rankings:
        for i, s in enumerate(scores):
            if np.isfinite(s):
                rank = 1 + sum(1 for t in scores if np.isfinite(t) and t > s)
                out[i] = (0.0 if out[i] == -np.inf else out[i]) + 1 / (k + rank)
    return out


def arrays(pairs):
    return np.array([i for i, _ in pairs], dtype=np.int64), np.array([s for _, s in pairs], dtype=float)


def test_fuse_orders_and_labels():
    out = fuse(arrays([(7, 9.0), (3, 4.0)]), arrays([(3, 0.8), (5, 0.7)]), k=60)
    assert [f.image_id for f in out] == [3, 7, 5]
    assert [f.via for f in out] == ["both", "keyword", "meaning"]
    assert out[0].bm25 == 4.0 and out[0].similarity == 0.8 and out[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fuse(arrays([]), arrays([])) == []


@pytest.mark.parametrize("seed", range(10))
def test_fuse_is_the_evaluation_ranking_with_ties_and_a_limit(seed):
    rng = np.random.default_rng(seed)
    n, limit = 300, int(rng.integers(1, 40))
    keyword = np.where(rng.random(n) < 0.3, rng.integers(0, 5, n).astype(float), -np.inf)  # many ties
    semantic = np.round(rng.random(n), 2)
    dense = naive_rrf([keyword, semantic])
    ids = rng.permutation(n)  # image ids, unrelated to positions; they break ties
    expected = sorted(range(n), key=lambda i: (-dense[i], ids[i]))[:limit]
    kw = np.isfinite(keyword)
    out = fuse((ids[kw], keyword[kw]), (ids, semantic), limit=limit)
    assert [f.image_id for f in out] == [int(ids[i]) for i in expected]
    assert [f.score for f in out] == pytest.approx([dense[i] for i in expected])
    every = fuse((ids[kw], keyword[kw]), (ids, semantic))
    order = sorted(range(n), key=lambda i: (-dense[i], ids[i]))
    assert [f.image_id for f in every] == [int(ids[i]) for i in order]


# A fake embedder: each word maps to a concept; a text's vector is the normalised sum of its concepts.
CONCEPTS = {
    "person": "person", "man": "person", "woman": "person", "people": "person", "child": "person",
    "tv": "tv", "television": "tv", "couch": "couch", "sofa": "couch", "cat": "cat", "kitten": "cat",
    "dog": "dog", "puppy": "dog", "car": "car", "red": "red", "street": "street", "night": "night",
    "horse": "horse", "bridge": "bridge", "pigeon": "bird", "bird": "bird",
}
AXES = sorted(set(CONCEPTS.values())) + ["other"]
BY_TOKEN = {stem(word): concept for word, concept in CONCEPTS.items()}  # tokenize() gives stems


class FakeEmbedder:
    name = "fake-concepts"

    def __init__(self) -> None:
        self.encoded: list[str] = []
        self.queries: list[str] = []

    def encode(self, texts, progress=False, query=False):
        (self.queries if query else self.encoded).extend(texts)
        out = np.zeros((len(texts), len(AXES)), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in tokenize(text):
                out[row, AXES.index(BY_TOKEN.get(token, "other"))] += 1.0
            out[row] /= max(np.linalg.norm(out[row]), 1e-9)
        return out

    def encode_query(self, text):
        return self.encode([text], query=True)[0]


LIBRARY = {
    "man": "Caption: A man rides a horse across a bridge.",
    "woman": "Tags: woman, sofa\nCaption: A woman reads on a sofa.",
    "person": "Caption: A person waits on the street.",
    "tv": "Tags: television, couch\nCaption: A television in front of a couch.",
    "redcar": "Caption: A red car on a street at night.",
    "carred": "Caption: Red lights behind a car on a night street.",
    "kitten": "Caption: A kitten and a puppy.",
    "pigeon": "Tags: pigeon, bridge\nCaption: A pigeon on a bridge.",
    "dog": "Caption: A dog on the street with people.",
    "lake": "Caption: Snow covered mountains above a lake.",
}


@pytest.fixture
def library(store):
    for name, text in LIBRARY.items():
        add(store, name, text)
    return store


def names(results):
    return [r.path.rsplit("/", 1)[1].removesuffix(".jpg") for r in results]


def test_hybrid_finds_other_words_for_the_same_thing(library):
    s = Searcher(library, mode="hybrid", embedder=FakeEmbedder(), feedback=False)
    assert names(s.search("person", mode="keyword")) == ["person", "dog"]  # "people" folds to person
    results = s.search("person", k=5)
    assert set(names(results)[:4]) == {"person", "man", "woman", "dog"}
    assert names(results)[0] == "person" and results[0].via == "both" and results[0].matched == ("person",)
    by_name = dict(zip(names(results), results, strict=True))
    assert by_name["man"].via == "meaning" and by_name["man"].matched == ()
    assert by_name["man"].similarity > 0 and by_name["man"].bm25 is None
    assert names(s.search("tv", k=1)) == ["tv"] and names(s.search("couch", k=2)) == ["tv", "woman"]


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_minus_word_never_appears_and_plus_word_always_does(library, mode):
    s = Searcher(library, mode=mode, embedder=FakeEmbedder())
    vocab = sorted({w for text in LIBRARY.values() for w in surface_words(text).values()})
    for a, b in itertools.product(["person", "street", "car", "bridge", "night"], vocab):
        [token] = tokenize(b)
        for r in s.search(f"{a} -{b}", k=20):
            assert token not in _tokens(library, r.image_id), (mode, a, b)
        for r in s.search(f"{a} +{b}", k=20):
            assert token in _tokens(library, r.image_id), (mode, a, b)


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_a_phrase_means_the_phrase_in_every_mode(library, mode):
    s = Searcher(library, mode=mode, embedder=FakeEmbedder())
    assert names(s.search('"red car"')) == ["redcar"]
    assert names(s.search('"car red"')) == []
    assert "redcar" not in names(s.search('street -"red car"', k=20))


def test_modes_are_checked_and_queries_embed_without_operators(library):
    fake = FakeEmbedder()
    s = Searcher(library, mode="semantic", embedder=fake)
    s.search('"red car" +street -night dogs')
    assert fake.queries == ["red car street dogs"] and len(fake.encoded) == len(LIBRARY)
    assert parse_query("-night").text == ""
    with pytest.raises(MllmretError, match="unknown search mode"):
        Searcher(library, mode="fuzzy")
    with pytest.raises(MllmretError, match="unknown search mode"):
        s.search("cat", mode="fuzzy")


def test_semantic_results_keep_matched_words_and_best_tile(library):
    s = Searcher(library, mode="semantic", embedder=FakeEmbedder())
    [top] = s.search("pigeon", k=1)
    assert top.matched == ("pigeon",) and top.via == "both" and top.tile_key == "full"
    as_dict = top.to_dict()
    assert as_dict["via"] == "both" and as_dict["similarity"] == pytest.approx(top.similarity, abs=1e-4)


def _tokens(store, image_id):
    texts = store.tile_texts(None, [image_id])
    return {t for tt in texts for t in tokenize(" , ".join(tt.tags)) + tokenize(tt.caption)}
