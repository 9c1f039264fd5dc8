import sqlite3

import pytest

from mllm_retrieval.capture.parsing import Parsed
from mllm_retrieval.capture.tiling import Box
from mllm_retrieval.errors import MllmretError
from mllm_retrieval.library.migrations import migrations
from mllm_retrieval.library.store import Store


def test_schema_after_migrations(store):
    tables = set(store.db.table_names())
    assert {"images", "files", "tiles", "runs", "captions"} <= tables
    assert [m.name for m in migrations.applied(store.db)] == [
        "m001_initial", "m002_text_changes", "m003_run_kind", "m004_runs_keyed_without_server",
        "m005_library_identity"]
    assert store.db["captions"].columns_dict.keys() >= {
        "tile_id", "run_id", "raw", "tags", "caption", "seconds"}


def test_reopening_a_database_keeps_data_and_is_wal(tmp_path):
    path = tmp_path / "x.db"
    with Store(path) as s:
        s.add_image("abc", "/p.jpg", 10, 10)
    with Store(path) as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("SELECT count(*) FROM images").fetchone()[0] == 1


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MllmretError, match="not an mllmret database|cannot open"):
        Store(bad)


def test_same_configuration_resumes_the_same_run(store):
    a = store.get_or_create_run("transformers", "m", {"max_new_tokens": 10}, "p", "prompt text")
    b = store.get_or_create_run("transformers", "m", {"max_new_tokens": 10}, "p", "prompt text")
    c = store.get_or_create_run("transformers", "m", {"max_new_tokens": 10}, "p", "other prompt")
    d = store.get_or_create_run("transformers", "m2", {"max_new_tokens": 10}, "p", "prompt text")
    assert a.id == b.id and len({a.id, c.id, d.id}) == 3


def test_images_are_keyed_by_content(store):
    a = store.add_image("sha1", "/a.jpg", 10, 10)
    moved = store.add_image("sha1", "/moved/a.jpg", 10, 10)
    other = store.add_image("sha2", "/b.jpg", 10, 10)
    assert a == moved != other
    assert store.image_row(a)["path"] == "/moved/a.jpg"


def test_changed_file_retires_the_old_image(store):
    old = store.add_image("sha-old", "/a.jpg", 10, 10)
    store.record_file("/a.jpg", old, 100, 1.0)
    new = store.add_image("sha-new", "/a.jpg", 10, 10)
    store.record_file("/a.jpg", new, 120, 2.0)
    assert store.image_row(old)["status"] == "replaced"
    assert store.image_row(new)["status"] == "ok"


def test_captions_are_unique_per_tile_and_run(store):
    image = store.add_image("sha", "/a.jpg", 100, 100)
    run = store.get_or_create_run("b", "m", {})
    tiles = store.ensure_tiles(image, [Box(0, 0, 100, 100), Box(0, 0, 50, 50)], 100, 100)
    assert store.ensure_tiles(image, [Box(0, 0, 50, 50)], 100, 100) == [tiles[1]]
    rows = [(tid, "raw", Parsed(("cat",), "A cat."), 0.1) for tid, _ in tiles]
    assert store.add_captions(run.id, rows) == 2
    assert store.add_captions(run.id, rows) == 0
    assert store.captioned_tiles(run.id, [t for t, _ in tiles]) == {t for t, _ in tiles}
    texts = list(store.tile_texts())
    assert [t.tile_key for t in texts] == ["full", "0,0,50,50"]
    assert texts[0].tags == ("cat",)


def test_a_failed_batch_stores_nothing(store):
    image = store.add_image("sha", "/a.jpg", 100, 100)
    run = store.get_or_create_run("b", "m", {})
    [(tile, _)] = store.ensure_tiles(image, [None], 100, 100)
    with pytest.raises(sqlite3.IntegrityError), store.atomic():
        store.add_captions(run.id, [(tile, "ok", Parsed((), ""), None)])
        store.add_captions(run.id, [(999_999, "dangling tile", Parsed((), ""), None)])
    assert store.stats()["captions"] == 0


def test_select_runs_by_model(store):
    a = store.get_or_create_run("b", "llava", {})
    store.get_or_create_run("b", "qwen", {})
    assert store.select_runs(model="llava") == [a.id]
    assert store.select_runs() is None
    with pytest.raises(MllmretError, match="no captions for model"):
        store.select_runs(model="nope")
