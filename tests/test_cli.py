import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import mllmret
from library_helpers import wait_for_captions


def test_caption_search_export_import_on_real_photos(coco_images, tiny_llava, tmp_path):
    db = tmp_path / "lib.db"
    r = mllmret("caption", coco_images, "--model", tiny_llava, "--batch-size", "2",
                "--max-new-tokens", "12", "-q", "--no-metadata", "--db", db)  # counts below: captions only
    assert "captioned 3 images (15 tiles)" in r.stderr
    stats = json.loads(mllmret("stats", "--json", "--db", db).stdout)
    assert stats["captions"] == 15 and stats["images"] == {"ok": 3}
    assert stats["runs"][0]["model"] == str(tiny_llava)

    # The tiny model writes noise; search for a word it actually wrote.
    with sqlite3.connect(db) as conn:
        raws = [r[0] for r in conn.execute("SELECT raw FROM captions")]
    from mllm_retrieval.search.text import tokenize
    word = next(t for raw in raws for t in tokenize(raw) if t.isalpha())
    hits = [json.loads(line) for line in
            mllmret("search", word, "--mode", "keyword", "--json", "--db", db).stdout.splitlines()]
    assert hits and word in hits[0]["matched"] and Path(hits[0]["path"]).parent == coco_images

    first = tmp_path / "first.jsonl"
    mllmret("export", "-o", first, "--db", db)
    mllmret("import", first, "--db", tmp_path / "copy.db")
    second = mllmret("export", "--db", tmp_path / "copy.db").stdout
    assert second == first.read_text() and len(second.splitlines()) == 15

    again = mllmret("caption", coco_images, "--model", tiny_llava, "--max-new-tokens", "12", "-q", "--db", db)
    assert "captioned 0 images" in again.stderr and "3 already captioned" in again.stderr


def test_search_output_and_no_hits(tmp_path):
    db = tmp_path / "demo.db"
    mllmret("demo", "--db", db)
    out = mllmret("search", "cat", "--db", db).stdout
    assert out.splitlines()[0].split()[:3][0] == "1" and "chelsea.png" in out
    assert "[cat]" in out
    r = mllmret("search", "giraffe", "--mode", "keyword", "--db", db)
    assert r.stdout == "" and "no images match 'giraffe'" in r.stderr
    r = mllmret("search", "space", "shuttle", "-k", "1", "--json", "--db", db)
    [hit] = [json.loads(line) for line in r.stdout.splitlines()]
    assert hit["path"].endswith("astronaut.png") and hit["box"] == [256, 0, 512, 256]


@pytest.mark.parametrize("args,message", [
    (["search", "cat"], "no captions in"),
    (["search", "--", "-cat"], "nothing to search for"),
    (["caption", ".", "--backend", "nope"], "unknown backend 'nope'"),
    (["caption", ".", "--grid", "4y4"], "invalid grid"),
    (["caption", ".", "--prompt", "no-such-prompt"], "no prompt 'no-such-prompt'"),
    (["caption", ".", "--backend", "import"], "needs --captions"),
    (["caption", ".", "--quantize", "4bit", "--model", "x/y"], "CUDA"),
    (["caption", ".", "--backend", "openai"], "needs --model"),
    (["caption", ".", "--ray", "local", "--shards", "out"], "use one of them"),
    (["caption", ".", "--backend", "import", "--captions", "c.jsonl", "--dry-run"],
     "--dry-run does not apply to --backend import"),
    (["caption", ".", "--backend", "import", "--captions", "c.jsonl", "--shards", "out"],
     "--shards does not apply to --backend import"),
    (["caption", ".", "--backend", "import", "--captions", "c.jsonl", "--ocr"],
     "--ocr does not apply to --backend import (it stores text made elsewhere; read the photos with"),
    (["import", "."], "no *.jsonl shards"),
    (["export", "--run", "7"], "no captions for run 7"),
])
def test_errors_are_one_line(tmp_path, args, message):
    r = mllmret(args[0], "--db", tmp_path / "x.db", *args[1:], ok=False)
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: ") and message in r.stderr and r.stderr.count("\n") == 1


def test_caption_backend_import(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"image_id": 7, "text": "Tags: zebra, grass"}) + "\n")
    r = mllmret("caption", "--backend", "import", "--captions", src, "--db", tmp_path / "x.db", tmp_path)
    assert "imported 1 captions" in r.stderr
    assert "zebra" in mllmret("search", "zebra", "--db", tmp_path / "x.db").stdout


def test_import_is_a_registered_backend_with_declared_options(tmp_path):
    from mllm_retrieval.capture.captioners import backend_options, backends

    assert "import" in backends() and backend_options("import") == {"captions", "images", "model"}
    r = mllmret("caption", tmp_path, "--backend", "import", "--captions", tmp_path / "c.jsonl",
                "--device", "cpu", "--db", tmp_path / "x.db", ok=False)
    assert r.exit_code == 1 and "--device does not apply to --backend import" in r.output
    r = mllmret("caption", tmp_path, "--captions", tmp_path / "c.jsonl", "--db", tmp_path / "x.db", ok=False)
    assert r.exit_code == 1 and "--captions does not apply to --backend transformers" in r.output


def test_every_command_has_help():
    for command in ["caption", "search", "import", "export", "stats", "check", "prompts", "demo",
                    "eval", "eval-composed", "tags write"]:
        r = mllmret(*command.split(), "--help")
        assert "Usage:" in r.stdout and len(r.stdout) > 100
    assert "tags_caption" in mllmret("prompts").stdout


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    from PIL import Image

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (64, 64), (i * 20, 100, 50)).save(folder / f"{i:02}.png")
    db = tmp_path / "kill.db"
    code = ("import sys; from mllm_retrieval.capture.captioners import register; "
            "register('fake', lambda **kw: __import__('fakes').FakeCaptioner(delay=0.1, **kw)); "
            "from mllm_retrieval.cli import app; sys.argv[0] = 'mllmret'; app()")
    cmd = [sys.executable, "-c", code, "caption", str(folder), "--backend", "fake", "--batch-size", "2",
           "-q", "--no-metadata", "--db", str(db)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    stored = wait_for_captions(db, 6, timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 6 <= stored < 60, "the run should have been killed part-way"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT tile_id) FROM captions").fetchone()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert total == distinct == 12 * 5
    assert "already captioned" in done.stderr


@pytest.mark.parametrize("extra", [[], ["--dry-run"], ["--ocr-only"]])
def test_caption_of_a_mistyped_folder_fails_in_one_line_and_makes_nothing(tmp_path, extra):
    db = tmp_path / "x.db"
    r = mllmret("caption", tmp_path / "mistyped" / "folder", "--db", db, *extra, ok=False)
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: ") and "no such file or folder" in r.stderr
    assert r.stderr.count("\n") == 1 and "mistyped" in r.stderr
    assert not db.exists()


def test_caption_summary_lists_files_that_left_the_folder(tmp_path, monkeypatch):
    from fakes import FakeCaptioner
    from PIL import Image

    from mllm_retrieval.capture.captioners import base

    monkeypatch.setitem(base._REGISTRY, "fake", lambda **kw: FakeCaptioner(**kw))
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    Image.new("RGB", (32, 32), "blue").save(folder / "b.png")
    db = tmp_path / "x.db"
    mllmret("caption", folder, "--backend", "fake", "--no-embed", "-q", "--db", db)
    (folder / "b.png").unlink()
    r = mllmret("caption", folder, "--backend", "fake", "--no-embed", "-q", "--db", db)
    assert "1 gone" in r.stderr
    assert f"gone {folder / 'b.png'}:" in r.stderr
