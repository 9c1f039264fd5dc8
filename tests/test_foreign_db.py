"""Another application's database is never touched: one line of refusal, the file byte for byte as it was."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest
from cli_helpers import mllmret

from mllm_retrieval.errors import MllmretError
from mllm_retrieval.library.store import Store


def _foreign(path, kind: str):
    conn = sqlite3.connect(path)
    if kind == "wal":
        conn.execute("PRAGMA journal_mode = wal")
    table = "images" if kind == "images" else "notes"
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute(f"INSERT INTO {table} (body) VALUES ('my own data')")
    conn.execute("CREATE TABLE tags (name TEXT)")
    conn.commit()
    conn.close()
    return path


def _state(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


COMMANDS = [
    ["stats"], ["stats", "--json"], ["search", "dog", "--mode", "keyword"], ["export"],
    ["import", "{lines}"], ["caption", "{lines}", "--backend", "import", "--captions", "{lines}"],
    ["search", "--like", "1", "dog", "--mode", "keyword"],
]


@pytest.mark.parametrize("kind", ["notes", "images", "wal", "not-sqlite"])
def test_every_command_refuses_a_foreign_file_and_leaves_it_unchanged(tmp_path, kind):
    folder = tmp_path / "theirs"
    folder.mkdir()
    db = folder / "notes.db"
    if kind == "not-sqlite":
        db.write_bytes(b"my notes, not a database\n" * 50)
    else:
        _foreign(db, kind)
    lines = tmp_path / "c.jsonl"
    lines.write_text(json.dumps({"image_id": 1, "text": "Tags: dog"}) + "\n")
    before = _state(folder)
    for command in COMMANDS + [["demo", "--db", db], ["serve", "--db", db, "--port", "1"]]:
        args = [str(a).replace("{lines}", str(lines)) for a in command]
        if "--db" not in args:
            args += ["--db", str(db)]
        r = mllmret(*args, ok=False)
        said = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 1, (args, r.output)
        assert len(said) == 1 and said[0].startswith("Error: ") and "not an mllmret database" in said[0], said
        assert _state(folder) == before, args


def test_store_refuses_before_any_pragma(tmp_path):
    db = _foreign(tmp_path / "app.db", "images")
    before = db.read_bytes()
    with pytest.raises(MllmretError, match=r"another application, with tables images, tags"):
        Store(db)
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_web_page_on_a_foreign_file_answers_and_changes_nothing(tmp_path):
    from fastapi.testclient import TestClient

    from mllm_retrieval.web.app import create_app

    db = _foreign(tmp_path / "notes.db", "notes")
    before = _state(tmp_path)
    with TestClient(create_app(db, mode="keyword"), base_url="http://127.0.0.1") as client:
        r = client.get("/api/search", params={"q": "dog"})
        assert r.status_code == 500 and "not an mllmret database" in r.json()["error"]
    assert _state(tmp_path) == before


def test_new_empty_and_own_libraries_open(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    sqlite3.connect(tmp_path / "blank.db").close()
    for path in (tmp_path / "new.db", empty, tmp_path / "blank.db"):
        with Store(path) as store:
            store.add_image("a" * 64, "/x.jpg", 1, 1)
        with Store(path) as store:  # and reopens as ours
            assert store.db.execute("SELECT count(*) FROM images").fetchone()[0] == 1
