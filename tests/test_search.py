import math

import pytest

from mllm_retrieval.capture.parsing import parse_output
from mllm_retrieval.capture.tiling import Box
from mllm_retrieval.search.searcher import Searcher, search
from mllm_retrieval.search.text import tokenize

FILLER = ["a red car parked on a street", "a bowl of fruit on a table", "a man riding a horse",
          "a plate with pizza", "snow covered mountains", "a boat on a lake"]


def add(store, name, full, tiles=(), run=None):
    run = run or store.get_or_create_run("t", "m", {})
    image = store.add_image(f"sha-{name}", f"/photos/{name}.jpg", 100, 100)
    boxes = [None] + [box for box, _ in tiles]
    ids = store.ensure_tiles(image, boxes, 100, 100)
    texts = [full] + [text for _, text in tiles]
    with store.atomic():
        store.add_captions(run.id, [(tid, t, parse_output(t), None) for (tid, _), t in zip(ids, texts,
                                                                                            strict=True)])
    return image


@pytest.fixture
def corpus(store):
    add(store, "a", "Tags: pigeon, bridge\nCaption: A pigeon on a bridge.")
    add(store, "b", "Tags: pigeon, pigeons\nCaption: Two pigeons.")
    add(store, "c", "Caption: A bridge over a river.")
    add(store, "d", "Caption: A cat on a sofa.")
    for i, text in enumerate(FILLER):
        add(store, f"filler{i}", f"Caption: {text}.")
    return store


def test_hand_ranked_results(corpus):
    results = search(corpus, "pigeon bridge")
    assert [r.path for r in results] == ["/photos/a.jpg", "/photos/b.jpg", "/photos/c.jpg"]
    assert results[0].matched == ("pigeon", "bridge")
    assert results[1].matched == ("pigeon",) and results[2].matched == ("bridge",)


def test_score_is_bm25_okapi(corpus):
    docs = [tokenize("pigeon , bridge") + tokenize("A pigeon on a bridge.")]
    n_docs, avgdl = 10, None
    lengths = [4, 4, 2, 2] + [len(tokenize(t)) for t in FILLER]  # a, b, c, d, fillers
    avgdl = sum(lengths) / n_docs
    idf = math.log((n_docs - 2 + 0.5) / (2 + 0.5))  # both words are in 2 of 10 documents
    dl = len(docs[0])
    expected = sum(idf * 2 * 2.5 / (2 + 1.5 * (1 - 0.75 + 0.75 * dl / avgdl)) for _ in range(2))
    assert search(corpus, "pigeon bridge")[0].score == pytest.approx(expected)


def test_plurals_and_case_find_the_same_images(corpus):
    assert [r.path for r in search(corpus, "PIGEONS")] == [r.path for r in search(corpus, "pigeon")]


def test_no_match_gives_no_results(corpus):
    assert search(corpus, "giraffe") == []
    assert search(corpus, "the of and") == []


def test_must_exclude_and_phrase(corpus):
    assert [r.path for r in search(corpus, "pigeon -bridge")] == ["/photos/b.jpg"]
    assert [r.path for r in search(corpus, "+bridge pigeon")] == ["/photos/a.jpg", "/photos/c.jpg"]
    assert [r.path for r in search(corpus, '"red car"')] == ["/photos/filler0.jpg"]
    assert search(corpus, '"car red"') == []
    assert [r.path for r in search(corpus, 'pigeon -"two pigeons"')] == ["/photos/a.jpg"]


def test_best_tile_shows_where_the_match_is(store):
    add(store, "street", "Caption: A busy street with shops.", tiles=[
        (Box(0, 0, 50, 50), "Tags: sky, building"),
        (Box(50, 0, 100, 50), "Tags: pigeon, lamp post\nCaption: A pigeon sits on a lamp post."),
    ])
    add(store, "other", "Caption: A quiet park.")
    [result] = search(store, "pigeon")
    assert result.tile == Box(50, 0, 100, 50) and result.tile_key == "50,0,100,50"


def test_k_limits_and_ranks_are_consecutive(corpus):
    results = search(corpus, "pigeon bridge car", k=2)
    assert [r.rank for r in results] == [1, 2]


def test_searcher_sees_new_captions_without_going_stale(corpus):
    searcher = Searcher(corpus)
    assert searcher.search("giraffe") == []
    add(corpus, "zoo", "Tags: giraffe")
    assert [r.path for r in searcher.search("giraffe")] == ["/photos/zoo.jpg"]


def test_run_filter(store):
    run_a = store.get_or_create_run("t", "model-a", {})
    run_b = store.get_or_create_run("t", "model-b", {})
    add(store, "x", "Tags: dog", run=run_a)
    add(store, "y", "Tags: dog", run=run_b)
    assert [r.path for r in search(store, "dog", run_ids=[run_b.id])] == ["/photos/y.jpg"]
    assert len(search(store, "dog")) == 2


def test_empty_store_and_empty_query(store):
    assert search(store, "anything") == []
    assert search(store, "") == []
