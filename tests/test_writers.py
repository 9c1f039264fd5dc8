"""Two writers on one library: both make progress, or the second says in one line that the library is busy."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import mllmret
from fakes import FakeCaptioner
from library_helpers import caption_units
from PIL import Image

from mllm_retrieval.capture import pipeline
from mllm_retrieval.capture.pipeline import caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.library.store import Store

CODE = ("import sys; from mllm_retrieval.capture.captioners import register; "
        "register('fake', lambda **kw: __import__('fakes').FakeCaptioner(delay=0.01, **kw)); "
        "from mllm_retrieval.cli import app; sys.argv[0] = 'mllmret'; app()")


def folder_of(path: Path, n: int, shade: int) -> Path:
    path.mkdir()
    for i in range(n):
        Image.new("RGB", (48, 48), (shade, i * 5, 60)).save(path / f"{i:02}.png")
    return path


def test_two_caption_runs_at_once_both_finish(tmp_path):
    a, b = folder_of(tmp_path / "a", 40, 10), folder_of(tmp_path / "b", 40, 200)
    db = tmp_path / "lib.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    cmds = [[sys.executable, "-c", CODE, "caption", str(f), "--backend", "fake", "--batch-size", "2", "-q",
             "--no-embed", "--db", str(db)] for f in (a, b)]
    procs = [subprocess.Popen(c, env=env, stderr=subprocess.PIPE, text=True) for c in cmds]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    total, distinct = caption_units(db)  # the photos' metadata, read by both runs too, is not counted
    assert total == distinct == 80 * 5


def test_a_library_locked_too_long_is_reported_busy_in_one_line(tmp_path, monkeypatch):
    db = tmp_path / "lib.db"
    Store(db).close()
    monkeypatch.setenv("MLLMRET_BUSY_TIMEOUT", "0.3")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        src = tmp_path / "c.jsonl"
        src.write_text('{"image_id": 7, "text": "Tags: zebra"}\n')
        r = mllmret("import", src, "--db", db, "--no-embed", "-q", ok=False)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: the library is busy") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output


@pytest.mark.parametrize("message,expect", [
    ("database is locked", "the library is busy"),
    ("database or disk is full", "free some disk space"),
    ("file is not a database", "database error"),
])
def test_every_sqlite_error_reaches_the_user_as_one_line(monkeypatch, tmp_path, message, expect):
    from mllm_retrieval.cli import library

    def broken(*_a, **_k):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(library, "open_store", broken)
    r = mllmret("stats", "--db", tmp_path / "x.db", ok=False)
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and expect in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output


def test_no_transaction_is_open_while_files_are_hashed(tmp_path, monkeypatch, photos):
    seen = []
    real = pipeline.sha256_file
    with Store(tmp_path / "lib.db") as store:
        def spy(path):
            seen.append(store.db.conn.in_transaction)
            return real(path)

        monkeypatch.setattr(pipeline, "sha256_file", spy)
        caption_paths(store, [photos], FakeCaptioner(), load_prompt(), progress=False)
    assert seen and not any(seen)
