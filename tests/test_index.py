import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mllm_retrieval.capture.parsing import parse_output
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index import get_engine
from mllm_retrieval.search.index.sparse_engine import SparseEngine
from mllm_retrieval.search.index.store_index import StoreIndex
from mllm_retrieval.search.searcher import Searcher


def zipf_corpus(n_docs, vocab=800, seed=0):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) for i in range(vocab)]
    return words, [rng.choices(words, weights, k=rng.randint(2, 25)) for _ in range(n_docs)]


def test_sparse_engine_matches_rank_bm25_exactly_through_adds_and_removes():
    words, docs = zipf_corpus(3000)
    fast, ref = get_engine("sparse"), get_engine("rank-bm25")
    for chunk in (docs[:2000], docs[2000:2500], docs[2500:]):
        assert fast.add(chunk) == ref.add(chunk)
    fast.remove(range(0, 3000, 5))
    ref.remove(range(0, 3000, 5))
    rng = random.Random(1)
    overlaps = []
    for _ in range(300):
        terms = rng.sample(words[:200], rng.randint(1, 3))
        a, b = fast.search(terms, 10), ref.search(terms, 10)
        assert [d for d, _ in a] == [d for d, _ in b]
        assert np.allclose([s for _, s in a], [s for _, s in b], rtol=1e-9)
        overlaps.append(len({d for d, _ in a} & {d for d, _ in b}) / max(len(b), 1))
    assert np.mean(overlaps) >= 0.99
    assert fast.idf("w0") == pytest.approx(ref.idf("w0"))


def test_must_and_exclude_filter_exactly():
    engine = SparseEngine()
    engine.add([["cat", "sofa"], ["cat", "dog"], ["dog"], ["cat"]])
    assert {d for d, _ in engine.search(["cat"], 10, exclude=["dog"])} == {0, 3}
    assert {d for d, _ in engine.search(["cat"], 10, must=["dog"])} == {1}
    assert engine.search(["cat"], 10, must=["unicorn"]) == []


def test_ties_are_broken_by_document_order_and_all_ties_survive_the_cut():
    engine = SparseEngine()
    engine.add([["x", "y"]] * 3 + [["x"]] + [["z"]] * 6)
    assert [d for d, _ in engine.search(["x"], 3)] == [3, 0, 1]
    assert [d for d, _ in engine.search(["x"], 2)] == [3, 0]


def test_save_and_load_round_trip(tmp_path):
    _, docs = zipf_corpus(500)
    engine = SparseEngine()
    engine.add(docs[:400])
    engine.add(docs[400:])  # lands in the delta, merged on save
    engine.remove([3, 7])
    engine.save(tmp_path / "i.npz", extra={"marker": np.arange(3)})
    loaded, extra = SparseEngine.load(tmp_path / "i.npz")
    assert extra["marker"].tolist() == [0, 1, 2]
    for terms in (["w1"], ["w2", "w30"], ["w499"]):
        assert loaded.search(terms, 20) == engine.search(terms, 20)
    saved_idf = loaded._idf.copy()  # saved with the index, so a cold search need not recompute it
    loaded._idf = None
    assert np.array_equal(saved_idf, loaded._idfs())
    loaded.remove([11])  # any change recomputes it
    assert loaded._idf is None and loaded.search(["w1"], 5)


def caption(store, name, text, run=None):
    run = run or store.get_or_create_run("t", "m", {})
    image = store.add_image(f"sha-{name}", f"/p/{name}.jpg", 10, 10)
    [(tile, _)] = store.ensure_tiles(image, [None], 10, 10)
    with store.atomic():
        store.add_captions(run.id, [(tile, text, parse_output(text), None)], replace=True)
    return image


def names(results):
    return [r.path.rsplit("/", 1)[1] for r in results]


def test_index_follows_the_database_and_survives_restarts(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        cat = caption(store, "cat", "Tags: cat, sofa")
        caption(store, "dog", "Tags: dog, sofa")
        searcher = Searcher(store)
        assert names(searcher.search("sofa")) == ["cat.jpg", "dog.jpg"]
        caption(store, "cat", "Tags: cat, bed")  # re-captioned: old text must go
        caption(store, "bird", "Tags: bird, sofa")
        assert names(searcher.search("sofa")) == ["dog.jpg", "bird.jpg"]
        assert searcher.index.sync() == 0
        with store.atomic():
            store.db.execute("UPDATE images SET status = 'missing' WHERE id = ?", [cat])
        assert searcher.search("cat") == []
    assert list(tmp_path.glob("lib.db.index-*.npz"))
    with Store(db) as store:
        index = StoreIndex(store)
        assert index.sync() == 0, "loaded from disk, nothing to re-index"
        caption(store, "fish", "Tags: fish, sofa")
        assert index.sync() == 1
        assert names(Searcher(store).search("sofa")) == ["dog.jpg", "bird.jpg", "fish.jpg"]


def test_crash_during_an_index_update_never_serves_stale_text(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        caption(store, "a", "Tags: red apple")
        StoreIndex(store).sync()
        caption(store, "a", "Tags: green pear")  # the database moved on; the index file did not
        [path] = tmp_path.glob("lib.db.index-*.npz")
        path.with_name(path.name + ".123.tmp.npz").write_bytes(b"half-written index")  # crashed save
    with Store(db) as store:
        searcher = Searcher(store)
        assert searcher.search("apple") == []
        assert names(searcher.search("pear")) == ["a.jpg"]


def test_damaged_index_file_is_rebuilt(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        caption(store, "a", "Tags: kite")
        StoreIndex(store).sync()
    [path] = tmp_path.glob("lib.db.index-*.npz")
    path.write_bytes(b"garbage")
    with Store(db) as store:
        assert names(Searcher(store).search("kite")) == ["a.jpg"]


def test_an_older_database_behind_the_index_forces_a_rebuild(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        caption(store, "a", "Tags: kite")
        caption(store, "b", "Tags: kite")
        StoreIndex(store).sync()
        with store.atomic():
            store.db.execute("DELETE FROM text_changes")  # as if restored from an old backup
            store.db.execute("DELETE FROM captions WHERE id = 2")
            store.db.execute("DELETE FROM text_changes")
    with Store(db) as store:
        assert names(Searcher(store).search("kite")) == ["a.jpg"]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("lib") / "lib.db")
    for i, text in enumerate(["Tags: pigeon, bridge", "Tags: cat: sofa", 'Caption: "quoted" NEAR (x)']):
        caption(store, str(i), text)
    yield Searcher(store)
    store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(['"', "*", "NEAR", "AND", "OR", "NOT", "(", ")", ":", "+", "-", "^",
                              "pigeon", "cat", "🐦", "é", "\x00", "'", "\\", "%", "_"]),
             max_size=20).map(" ".join),
))
def test_any_user_input_returns_results_or_nothing_never_an_error(library, text):
    results = library.search(text, 5)
    allowed = {"pigeon", "bridge", "cat", "sofa", "quoted", "near", "x"}
    for r in results:
        assert set(r.matched) <= allowed
