"""A full disk: a caption run stops with one clear line, and the library stays usable. The disk is a real
1 MiB tmpfs (mounted as root; skipped where that is not allowed), so the error is SQLite's own ENOSPC."""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing

import pytest
from cli_helpers import mllmret
from fakes import FakeCaptioner
from PIL import Image

from mllm_retrieval.capture.captioners import base


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()!r}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_stops_the_run_in_one_line_and_the_library_stays_usable(small_disk, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setitem(base._REGISTRY, "fake", lambda **kw: FakeCaptioner(**kw))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(60):
        Image.new("RGB", (64, 64), (i * 4, 80, 120)).save(photos / f"{i:02}.png")
    db = small_disk / "lib.db"
    first = sorted(photos.iterdir())[:3]
    mllmret("caption", *first, "--backend", "fake", "--no-embed", "-q", "--db", db)
    filler = small_disk / "filler"
    with filler.open("wb") as f:  # leave about 48 KB free
        try:
            f.write(b"\0" * (1 << 20))
        except OSError:
            pass
    filler.write_bytes(b"\0" * (filler.stat().st_size - 48 * 1024))
    r = mllmret("caption", photos, "--backend", "fake", "--no-embed", "-q", "--batch-size", "4", "--db", db,
                ok=False)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().splitlines()[-1].startswith("Error: ") and "disk" in r.stderr.lower()
    filler.unlink()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert "00.png" in mllmret("search", "blue", "--mode", "keyword", "-k", "100", "--db", db).stdout
    mllmret("caption", photos, "--backend", "fake", "--no-embed", "-q", "--db", db)  # room again: it resumes
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(DISTINCT t.image_id) FROM captions c JOIN tiles t "
                            "ON t.id = c.tile_id").fetchone()[0] == 60
