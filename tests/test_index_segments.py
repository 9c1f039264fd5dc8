"""The keyword index on disk is a base file plus segments: a catch-up writes only what changed, segments
merge by level and into a new base when that pays (tombstones purged then), and a damaged, foreign or
orphaned segment is never used: the index catches up from the database instead, with a one-line notice."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest
from test_derived_files import killed_while_running
from test_index import zipf_corpus
from test_search import add

from mllm_retrieval.library.housekeeping import survey_derived
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index import get_engine, sparse_engine, store_index
from mllm_retrieval.search.index.store_index import StoreIndex, chained_segments

WORDS = [f"w{i}" for i in range(300)]
QUERIES = (["w1"], ["w7", "w42"], ["w3", "w250"], ["giraffe"], ["w0", "w299"])


def caption(store: Store, n: int, seed: int, start: int = 0) -> None:
    rng = random.Random(seed)
    run = store.get_or_create_run("t", "m", {})
    for i in range(start, start + n):
        add(store, f"img{i}", "Tags: " + ", ".join(rng.sample(WORDS, 8)), run=run)


def recaption(store: Store, names: list[str], seed: int) -> None:
    """More text for existing images, from another run (their old documents become tombstones)."""
    rng = random.Random(seed)
    run = store.get_or_create_run("t", f"again{seed}", {})
    for name in names:
        add(store, name, "Tags: " + ", ".join(rng.sample(WORDS, 8)), run=run)


def indexed(store: Store, n: int) -> StoreIndex:
    """n captioned images and their keyword index, saved."""
    caption(store, n, seed=1)
    index = StoreIndex(store)
    index.sync()
    return index


def agrees_with_a_rebuild(store: Store, index: StoreIndex) -> None:
    fresh = StoreIndex(store, persist=False)
    for terms in QUERIES:
        got, want = index.search(terms, 40), fresh.search(terms, 40)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want])


def files(db: Path) -> dict[str, int]:
    """Index files beside the database and their inode, to see which were written again."""
    return {p.name: p.stat().st_ino for p in db.parent.glob(f"{db.name}.index-*.npz")}


def test_the_sparse_engine_merges_its_delta_by_insertion_exactly(monkeypatch):
    monkeypatch.setattr(sparse_engine, "MERGE_AT", 500)  # every add past the first merges into the base
    words, docs = zipf_corpus(2500, seed=4)
    fast, ref = get_engine("sparse"), get_engine("rank-bm25")
    rng = random.Random(2)
    bases, chunks = set(), 0
    for start in range(0, 2500, 125):
        fast.add(docs[start : start + 125])
        ref.add(docs[start : start + 125])
        if start % 500 == 0:  # some rounds only add: document frequencies are kept up to date, not recounted
            fast.remove(range(start, start + 125, 7))
            ref.remove(range(start, start + 125, 7))
        bases.add(len(fast.post_docs))
        chunks = max(chunks, len(fast._delta))
        for _ in range(10):
            terms = rng.sample(words[:300], rng.randint(1, 3))
            a, b = fast.search(terms, 10), ref.search(terms, 10)
            assert [d for d, _ in a] == [d for d, _ in b]
            assert np.allclose([s for _, s in a], [s for _, s in b], rtol=1e-9)
    assert len(bases) > 3 and chunks > 1, "merged into the base several times, searched in chunks too"


def test_a_segment_replayed_on_its_base_gives_the_same_index_and_purge_changes_no_score():
    words, docs = zipf_corpus(1200, seed=5)
    engine = get_engine("sparse")
    engine.add(docs[:1000])
    replica = get_engine("sparse")
    replica.add(docs[:1000])
    engine.mark_saved()
    engine.add(docs[1000:] + [["brandnewword", "w1"]])
    engine.remove([3, 1005])
    replica.apply_segment(engine.segment())
    for terms in (["w1"], ["w5", "w9"], ["brandnewword"]):
        assert replica.search(terms, 20) == engine.search(terms, 20)
    with pytest.raises(ValueError):
        replica.apply_segment(engine.segment())  # it continues the index before it, not this one
    before = {tuple(t): engine.search(t, 30) for t in (["w1"], ["w5", "w9"])}
    new_id = engine.purge()
    assert engine.dead() == 0 and new_id[3] == -1 and new_id[4] == 3
    for terms, hits in before.items():
        assert engine.search(list(terms), 30) == [(int(new_id[d]), s) for d, s in hits]


def test_a_catch_up_writes_a_segment_not_the_whole_index(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        index = indexed(store, 300)
        base = files(db)
        caption(store, 10, seed=2, start=300)
        assert index.sync() == 10
        now = files(db)
        assert {k: v for k, v in now.items() if k in base} == base, "the base file is left as it was"
        [segment] = set(now) - set(base)
        assert segment.endswith(".seg1.npz")
        assert chained_segments(index.path) == [tmp_path / segment]
    with Store(db) as store:  # a restart replays base + segment
        again = StoreIndex(store)
        assert again._load(store.change_head()) and again.watermark == store.change_head()
        agrees_with_a_rebuild(store, again)


def test_segments_merge_by_level_then_into_a_new_base_and_tombstones_are_purged(tmp_path, monkeypatch):
    monkeypatch.setattr(store_index, "FANOUT", 3)
    db = tmp_path / "lib.db"
    with Store(db) as store:
        index = indexed(store, 400)
        base_inode = files(db)[index.path.name]
        levels = []
        for round_ in range(10):
            caption(store, 3, seed=10 + round_, start=400 + 3 * round_)
            recaption(store, [f"img{round_}"], seed=50 + round_)
            index.sync()
            levels.append([lv for _, lv, _ in index._chain[1:]])
            agrees_with_a_rebuild(store, index)
        assert levels[2] == [1] and levels[8] == [2] and levels[9] == [2, 0]
        assert files(db)[index.path.name] == base_inode, "small catch-ups never rewrite the base"
        assert len(files(db)) == 3 and index.engine.dead() == 10
        monkeypatch.setattr(store_index, "PURGE_FRACTION", 0.005)  # tombstones now pay a new base
        caption(store, 1, seed=99, start=500)
        index.sync()
        assert list(files(db)) == [index.path.name] and index.engine.dead() == 0
        agrees_with_a_rebuild(store, index)
    with Store(db) as store:
        agrees_with_a_rebuild(store, StoreIndex(store))


def test_segments_past_a_quarter_of_the_base_make_a_new_base(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        index = indexed(store, 100)
        for round_ in range(4):
            caption(store, 10, seed=20 + round_, start=100 + 10 * round_)
            index.sync()
        assert len(index._chain) < 4 and len(files(db)) == len(index._chain)
    with Store(db) as store:
        agrees_with_a_rebuild(store, StoreIndex(store))


def two_segments(db: Path) -> list[Path]:
    with Store(db) as store:
        index = indexed(store, 200)
        for round_ in range(2):
            caption(store, 5, seed=30 + round_, start=200 + 5 * round_)
            recaption(store, [f"img{round_}"], seed=60 + round_)
            index.sync()
        return chained_segments(index.path)


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "foreign", "orphan"])
def test_a_bad_segment_is_never_used_and_the_index_catches_up(tmp_path, caplog, damage):
    db = tmp_path / "lib.db"
    first, second = two_segments(db)
    if damage == "truncated":
        first.write_bytes(first.read_bytes()[:200])
    elif damage == "random bytes":
        data = bytearray(first.read_bytes())
        rng = random.Random(3)
        for _ in range(64):
            data[rng.randrange(len(data))] = rng.randrange(256)
        first.write_bytes(bytes(data))
    elif damage == "foreign":  # the same name in another library's folder
        other = tmp_path / "other" / "lib.db"
        other.parent.mkdir()
        foreign, _ = two_segments(other)
        first.write_bytes(foreign.read_bytes())
    else:  # a segment written on another base (a second process's chain)
        with np.load(first) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["parent"] = np.asarray([12345], dtype=np.int64)
        np.savez(first, **arrays)  # the name ends in .npz: written in place
    with Store(db) as store:
        unusable = {f.path.name for f in survey_derived(store).unusable}
        assert first.name in unusable and second.name in unusable
        with caplog.at_level(logging.WARNING):
            index = StoreIndex(store)
            agrees_with_a_rebuild(store, index)
        notices = [r.getMessage() for r in caplog.records if first.name in r.getMessage()]
        assert len(notices) == 1 and "\n" not in notices[0] and "catching up" in notices[0]
        assert not any(second.name in r.getMessage() for r in caplog.records), "nothing past it is read"
        assert index.sync() == 0
        assert chained_segments(index.path) == [first], "the catch-up replaced the bad segment"
    with Store(db) as store:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            agrees_with_a_rebuild(store, StoreIndex(store))
        assert not caplog.records


SAVER = """
import random, sys
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index.store_index import StoreIndex
sys.path.insert(0, sys.argv[2])
from test_index_segments import caption
store = Store(sys.argv[1])
index = StoreIndex(store)
index.sync()
print("ready", flush=True)
for i in range(10_000):
    caption(store, 3, seed=i, start=10_000 + 3 * i)
    index.sync()
"""


def test_kill_9_during_catch_ups_leaves_an_index_that_agrees_with_the_database(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        indexed(store, 300)
    for _ in killed_while_running(SAVER, [str(db), str(Path(__file__).parent)], [0.3, 0.7, 1.1, 1.5]):
        with Store(db) as store:
            index = StoreIndex(store)
            assert index._load(store.change_head()), "the base and a chain of whole segments always load"
            agrees_with_a_rebuild(store, index)


def test_a_segment_damaged_before_its_merge_makes_a_new_base_not_an_error(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(store_index, "FANOUT", 2)
    db = tmp_path / "lib.db"
    with Store(db) as store:
        index = indexed(store, 200)
        caption(store, 2, seed=5, start=200)
        index.sync()
        [first] = chained_segments(index.path)
        st = first.stat()
        first.write_bytes(bytes(st.st_size))  # zeroed in place (a disk fault), same size and time
        os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))
        caption(store, 2, seed=6, start=202)
        with caplog.at_level(logging.WARNING):
            index.sync()  # the second segment: the two would merge, and the first cannot be read
        assert "writing the whole index" in caplog.text and chained_segments(index.path) == []
        agrees_with_a_rebuild(store, index)
    with Store(db) as store:
        agrees_with_a_rebuild(store, StoreIndex(store))
