"""The int8 scan of large libraries: within its error bound, and search ranks exactly as with float32."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest
from test_search import add

from mllm_retrieval.capture.tiling import Box
from mllm_retrieval.search.index import quantized, semantic_index
from mllm_retrieval.search.index.quantized import Int8Rows
from mllm_retrieval.search.index.semantic_index import SemanticIndex
from mllm_retrieval.search.searcher import FUSED_EXACT, Searcher

WORDS = ("cat dog kitten puppy person man woman red car street night bridge pigeon sofa couch tv bowl fruit "
         "table horse boat lake snow mountain pizza plate").split()
needs_simsimd = pytest.mark.skipif(not quantized.available(), reason="simsimd is not installed")


class Topics:
    """Real-ish sentence vectors: a dense random direction per word, summed over the text, plus noise; so
    texts that share words are close, as a sentence embedder's are (clusters, not uniform noise)."""

    name = "topics"

    def __init__(self, dim: int = 96) -> None:
        rng = np.random.default_rng(1)
        self.basis = {w: rng.standard_normal(dim).astype(np.float32) for w in WORDS}
        self.dim = dim

    def encode(self, texts, progress=False, query=False):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w.strip(".,") for w in text.lower().split()]
            seed = zlib.crc32(text.encode()) if not query else 0
            out[row] = np.random.default_rng(seed).standard_normal(self.dim) * 0.6
            for w in words:
                out[row] += self.basis.get(w, 0)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_query(self, text):
        return self.encode([text], query=True)[0]


def test_int8_scores_stay_within_their_bound():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3000, 384)).astype(np.float32) * rng.uniform(0.1, 3, 384).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    int8 = Int8Rows(384)
    int8.extend(rows[:1000])
    int8.extend(rows[1000:], chunk=700)  # rows join in pieces, each with its own scale
    for _ in range(5):
        q = rng.standard_normal(384).astype(np.float32)
        q /= np.linalg.norm(q)
        if not quantized.available():
            pytest.skip("simsimd is not installed")
        approx, error = int8.scores(q)
        gap = np.abs(approx - rows @ q)
        assert gap.max() <= error and error < 0.05 and gap.mean() < 0.005


def library(store, n: int = 600) -> None:
    rng = random.Random(3)
    for i in range(n):
        words = rng.sample(WORDS, rng.randint(2, 6))
        add(store, f"img{i}", "Caption: " + " ".join(words) + ".",
            tiles=[(Box(0, 0, 50, 50), "Caption: " + " ".join(rng.sample(WORDS, 2)) + ".")])


QUERIES = ["cat", "dog on a sofa", "red car street", "pigeon", "horse +lake", "pizza -plate", "snow mountain",
           "man woman", "tv", "boat lake night"]


@needs_simsimd
@pytest.mark.parametrize("mode,feedback,cut", [("hybrid", None, None), ("hybrid", False, None),
                                              ("semantic", None, None), ("hybrid", None, (0.2, 0.7))])
def test_the_int8_scan_ranks_exactly_as_float32(store, monkeypatch, mode, feedback, cut):
    library(store)
    embedder = Topics()
    floor, relative = cut or (None, None)
    options = {"mode": mode, "embedder": embedder, "feedback": feedback, "persist": False,
               "min_similarity": floor, "min_relative": relative}
    exact = Searcher(store, **options)
    want = {q: (exact.search(q, 20), exact.hidden) for q in QUERIES}
    assert exact.semantic.similarities(embedder.encode_query("cat")).error == 0
    monkeypatch.setattr(semantic_index, "APPROX_FROM", 10)  # this small library is scanned in int8
    monkeypatch.setattr(semantic_index, "EXACT_TOP", 40)
    monkeypatch.setattr("mllm_retrieval.search.searcher.FUSED_EXACT", 20)
    approx = Searcher(store, **options)
    assert approx.semantic.similarities(embedder.encode_query("cat")).error > 0
    for q in QUERIES:
        got, (results, hidden) = approx.search(q, 20), want[q]
        assert [r.image_id for r in got] == [r.image_id for r in results], q
        assert np.allclose([r.score for r in got], [r.score for r in results], atol=1e-5)
        assert [r.similarity is None for r in got] == [r.similarity is None for r in results]
        assert abs(approx.hidden - hidden) <= 2  # images near the cut, beyond the first results, may differ


@needs_simsimd
def test_the_best_and_lowest_similarities_of_an_int8_scan_are_exact(store, monkeypatch):
    library(store)
    monkeypatch.setattr(semantic_index, "APPROX_FROM", 10)
    index = SemanticIndex(store, embedder=Topics(), persist=False)
    q = Topics().encode_query("dog sofa")
    found = index.similarities(q)
    exact = index.vectors[found.rows] @ q
    top = np.argsort(-exact)[: semantic_index.EXACT_TOP]
    assert found.error > 0 and np.allclose(found.sims[top], exact[top], atol=1e-6)
    assert found.sims.min() == pytest.approx(exact.min(), abs=1e-6)
    assert found.sims.max() == pytest.approx(exact.max(), abs=1e-6)
    assert np.all(np.abs(found.sims - exact) <= found.error)
    kept = index.similarities(q, min_similarity=0.3)  # a floor is applied to exact similarities
    assert set(kept.ids.tolist()) == set(found.ids[exact >= 0.3].tolist())


def test_the_int8_scan_starts_far_above_the_evaluation_sets():
    largest = 5000  # images in the largest evaluation set (COCO val2017), eval/RESULTS.md
    assert semantic_index.APPROX_FROM >= 40 * largest
    assert FUSED_EXACT <= semantic_index.EXACT_TOP


def test_without_simsimd_the_scan_stays_exact(store, monkeypatch):
    library(store, 50)
    monkeypatch.setattr(semantic_index, "APPROX_FROM", 10)
    monkeypatch.setattr(quantized, "_simsimd", lambda: None)
    index = SemanticIndex(store, embedder=Topics(), persist=False)
    q = Topics().encode_query("cat")
    found = index.similarities(q)
    assert found.error == 0 and np.array_equal(found.sims, index.vectors[found.rows] @ q)
    assert not quantized.available()


@needs_simsimd
def test_a_large_saved_index_maps_its_float32_rows_and_still_takes_new_images(tmp_path, monkeypatch):
    from mllm_retrieval.library.store import Store

    monkeypatch.setattr(semantic_index, "APPROX_FROM", 10)
    with Store(tmp_path / "lib.db") as store:
        library(store, 60)
        first = SemanticIndex(store, embedder=Topics())
        first.sync()
        q = Topics().encode_query("red car")
        want = first.vectors @ q
        loaded = SemanticIndex(store, embedder=Topics())
        loaded.sync()
        assert not loaded.vectors.flags.writeable  # mapped from the .f32 file, not read into memory
        found = loaded.similarities(q)
        assert np.allclose(found.sims, want[found.rows], atol=found.error) and found.error > 0
        assert np.allclose(loaded.vectors, first.vectors)
        add(store, "new", "Caption: a red car on a red street.")
        assert loaded.sync() == 1 and loaded.vectors.flags.writeable  # new rows: copied into memory
        ids, _ = loaded.scores(q)
        assert len(ids) == 61
