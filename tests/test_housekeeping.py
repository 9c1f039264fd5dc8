"""Housekeeping: the change log stays bounded through any number of re-caption cycles while every index
stays right; `mllmret check` finds unusable derived files and missing photos; `--repair` fixes what it can."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from cli_helpers import mllmret
from test_fusion import FakeEmbedder
from test_search import add

from mllm_retrieval.capture.parsing import parse_output
from mllm_retrieval.library import housekeeping
from mllm_retrieval.library.embed import embed_library
from mllm_retrieval.library.housekeeping import change_log_rows, remove_unusable, survey_derived
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index.semantic_index import SemanticIndex
from mllm_retrieval.search.index.store_index import StoreIndex

ANIMALS = ["zebra", "giraffe", "lion", "hippo", "rhino"]


def recaption(store: Store, cycle: int) -> None:
    """Every caption written again, each image now about another animal (as `caption --force` would)."""
    rows = store.db.execute("SELECT tile_id, run_id FROM captions").fetchall()
    with store.atomic():
        for tile_id, run_id in rows:
            text = f"Tags: {ANIMALS[(tile_id + cycle) % len(ANIMALS)]}"
            store.add_captions(run_id, [(tile_id, text, parse_output(text), None)], replace=True)


def fresh(store: Store, word: str) -> list[tuple[int, float]]:
    return StoreIndex(store, persist=False).search([word], 100)


@pytest.fixture
def small_bound(monkeypatch):
    monkeypatch.setattr(housekeeping, "KEEP_MIN", 8)


def test_change_log_stays_bounded_through_recaption_cycles(tmp_path, small_bound):
    with Store(tmp_path / "lib.db") as store:
        for i in range(12):
            add(store, f"img{i}", "Tags: zebra")
        lagging = StoreIndex(store)  # synced once, then left behind by everything below
        lagging.sync()
        sizes = []
        for cycle in range(30):
            recaption(store, cycle)
            embed_library(store, embed=False)
            sizes.append(change_log_rows(store))
        captions = store.db.execute("SELECT count(*) FROM captions").fetchone()[0]
        assert max(sizes) <= housekeeping.RATIO * captions
        assert store.changes_floor() > 0, "the log was compacted"
        for word in ANIMALS:
            assert StoreIndex(store).search([word], 100) == fresh(store, word)
            assert lagging.search([word], 100) == fresh(store, word), "a lagging index catches up right"


def test_a_semantic_index_behind_the_floor_keeps_the_vectors_of_unchanged_texts(tmp_path, small_bound):
    class Counting(FakeEmbedder):
        def __init__(self):
            super().__init__()
            self.texts = []

        def encode(self, texts, progress=False, query=False):
            if not query:
                self.texts.extend(texts)
            return super().encode(texts, progress, query)

    db = tmp_path / "lib.db"
    with Store(db) as store:
        ids = [add(store, f"img{i}", f"Caption: a cat number {i}.") for i in range(10)]
        SemanticIndex(store, embedder=FakeEmbedder()).sync()
        for _ in range(8):  # the same text written again and again: the log grows, the text does not change
            recaption_same = store.db.execute("SELECT tile_id, run_id, raw FROM captions").fetchall()
            with store.atomic():
                for tile_id, run_id, raw in recaption_same:
                    store.add_captions(run_id, [(tile_id, raw, parse_output(raw), None)], replace=True)
        with store.atomic():
            store.db.execute("UPDATE captions SET caption = 'a dog' WHERE tile_id IN "
                             "(SELECT id FROM tiles WHERE image_id = ?)", [ids[0]])
        assert housekeeping.compact_change_log(store) > 0
        counting = Counting()
        index = SemanticIndex(store, embedder=counting)
        assert index.sync() == 1 and counting.texts == ["a dog"], "only the changed text is embedded"
        top = index.search(FakeEmbedder().encode_query("dog"), 1)
        assert top[0][0] == ids[0] and np.isclose(top[0][1], 1.0)


def test_check_finds_and_repair_removes_unusable_derived_files(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        add(store, "a", "Tags: kite")
        other = store.get_or_create_run("t", "other", {})
        add(store, "b", "Tags: kite", run=other)
        StoreIndex(store).sync()
        StoreIndex(store, [other.id]).sync()  # an index of one run, which is then deleted
        with store.atomic():
            store.db.execute("DELETE FROM runs WHERE id = ?", [other.id])
    (tmp_path / "lib.db.index-0123456789ab.npz").write_bytes(b"old format")
    (tmp_path / "lib.db.index-0123456789ab.npz.99.tmp.npz").write_bytes(b"half a save")
    (tmp_path / "lib.db.index-0123456789ab.npz.98.tmp.npz").write_bytes(b"a save going on now")
    old = time.time() - 3600
    os.utime(tmp_path / "lib.db.index-0123456789ab.npz.99.tmp.npz", (old, old))
    with Store(db) as store:
        problems = {f.path.name: f.problem for f in survey_derived(store).unusable}
    assert sorted(problems.values()) == ["left by a save that did not finish",
                                         "made for runs that no longer exist",
                                         "unreadable, or written by an older version"]
    r = mllmret("check", "--db", db, ok=False)
    assert r.exit_code == 1 and "database: ok" in r.stdout and "3 unusable" in r.stdout
    r = mllmret("check", "--repair", "--db", db)
    assert "0 unusable" in r.stdout and r.stdout.count("repaired: removed") == 4, "3 files + 1 lock"
    with Store(db) as store:
        kept = StoreIndex(store).path.name
    assert sorted(p.name for p in tmp_path.glob("lib.db.index-*")) == [
        "lib.db.index-0123456789ab.npz.98.tmp.npz", kept, f"{kept}.lock"], \
        "a save going on elsewhere is left alone; the deleted run's lock goes with its index"
    assert "kite" in mllmret("search", "kite", "--mode", "keyword", "--db", db).stdout


def test_check_reports_missing_and_changed_photos(tmp_path, photos):
    db = tmp_path / "lib.db"
    from fakes import FakeCaptioner

    from mllm_retrieval.capture.pipeline import caption_paths
    from mllm_retrieval.capture.prompts import load_prompt

    with Store(db) as store:
        caption_paths(store, [photos], FakeCaptioner(), load_prompt(), progress=False)
    (photos / "red.jpg").unlink()
    (photos / "palette.gif").write_bytes((photos / "palette.gif").read_bytes() + b"x")
    r = mllmret("check", "--db", db, ok=False)
    assert r.exit_code == 1
    assert f"missing {photos / 'red.jpg'}" in r.stdout and f"changed {photos / 'palette.gif'}" in r.stdout
    assert "1 missing, 1 changed" in r.stdout


def test_semantic_files_of_an_embedder_folder_that_is_gone_are_unusable(tmp_path):
    folder = tmp_path / "my-embedder"
    folder.mkdir()

    class Local(FakeEmbedder):
        name = str(folder)

    with Store(tmp_path / "lib.db") as store:
        add(store, "a", "Caption: a cat.")
        SemanticIndex(store, embedder=Local()).sync()
        assert not survey_derived(store).unusable
        folder.rmdir()
        problems = {f.problem for f in survey_derived(store).unusable}
    assert problems == {"made with an embedder folder that no longer exists"}


def test_ingest_removes_derived_files_no_index_can_use(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        add(store, "a", "Tags: kite")
    older = tmp_path / "lib.db.index-0123456789ab.npz"
    np.savez(older, watermark=np.asarray([1]))  # an index file of an older version (no format, no identity)
    newer_rows = tmp_path / "lib.db.semantic-0123456789ab.7.f32"  # rows of a save going on (no sidecar yet)
    newer_rows.write_bytes(b"")
    with Store(db) as store:
        embed_library(store, embed=False)
    with Store(db) as store:
        kept = StoreIndex(store).path.name
    assert not older.exists()
    left = sorted(p.name for p in tmp_path.glob("lib.db.*") if p.suffix != ".lock")
    assert left == sorted([newer_rows.name, kept])


def test_files_of_a_library_whose_name_extends_ours_are_not_ours(tmp_path):
    with Store(tmp_path / "lib.db.old") as old:
        add(old, "a", "Tags: kite")
        StoreIndex(old).sync()
    theirs = sorted(p.name for p in tmp_path.glob("lib.db.old.*"))
    with Store(tmp_path / "lib.db") as store:
        add(store, "b", "Tags: kite")
        embed_library(store, embed=False)
        assert all(f.path.name.startswith("lib.db.index-") for f in survey_derived(store).files)
    assert sorted(p.name for p in tmp_path.glob("lib.db.old.*")) == theirs and theirs


def test_a_lock_left_by_an_index_that_is_gone_is_removed_unless_held(tmp_path):
    import fcntl

    db = tmp_path / "lib.db"
    with Store(db) as store:
        add(store, "a", "Tags: kite")
        StoreIndex(store).sync()
    orphan = tmp_path / "lib.db.index-0123456789ab.npz.lock"
    held = tmp_path / "lib.db.index-ba9876543210.npz.lock"
    orphan.touch()
    held.touch()
    with held.open("a") as f, Store(db) as store:
        fcntl.flock(f, fcntl.LOCK_EX)  # another process saving that index right now
        report = survey_derived(store)
        assert {f.path.name for f in report.unusable} == {orphan.name, held.name}
        assert remove_unusable(report) == [orphan]
    assert not orphan.exists() and held.exists()
    assert "kite" in mllmret("search", "kite", "--mode", "keyword", "--db", db).stdout
