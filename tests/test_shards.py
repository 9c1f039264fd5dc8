"""Captions written as JSONL shards by a worker with no database, then merged by `mllmret import DIR`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import mllmret
from fakes import FakeCaptioner
from PIL import Image

from mllm_retrieval.capture.captioners import register, unregister
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.capture.shards import caption_to_shards, import_shards
from mllm_retrieval.errors import ImportFormatError
from mllm_retrieval.library.store import Store

PROMPT = load_prompt()
TESTS = Path(__file__).resolve().parent
WORKER = """
import sys
from fakes import FakeCaptioner
from mllm_retrieval.capture.pipeline import CaptionSettings
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.capture.shards import caption_to_shards
s = caption_to_shards([sys.argv[1]], FakeCaptioner(), load_prompt(), sys.argv[2],
                      CaptionSettings(batch_size=3),
                      progress=False, shard_tiles=7)
print(s.captioned_images, s.captioned_tiles, len(s.failed))
"""


def library_rows(store: Store) -> list[tuple]:
    """What a library holds, independent of ids: image hash, tile, run identity, text."""
    return sorted(store.db.execute(
        "SELECT i.sha256, i.width, i.height, t.key, t.x0, t.y0, t.x1, t.y1, r.key, r.backend, r.model, "
        "r.params, r.prompt_name, c.raw, c.tags, c.caption FROM captions c JOIN tiles t ON t.id = c.tile_id "
        "JOIN images i ON i.id = t.image_id JOIN runs r ON r.id = c.run_id").fetchall())


def shard_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()]


def test_shards_from_another_process_import_equal_to_a_local_run(tmp_path, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
           "MLLMRET_DATA_DIR": str(tmp_path / "no-data-here")}
    out = tmp_path / "shards"
    done = subprocess.run([sys.executable, "-c", WORKER, str(photos), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "20", "1"]  # the broken file is reported by the worker
    assert not (tmp_path / "no-data-here").exists()  # the worker opened no database
    sizes = [len(p.read_text().splitlines()) for p in sorted(out.glob("*.jsonl"))]
    assert sizes == [10, 10] and not list(out.glob(".*"))  # shards of whole images (7 tiles -> 2 images)
    with Store(memory=True) as local, Store(memory=True) as merged:
        caption_paths(local, [photos], FakeCaptioner(), PROMPT, progress=False)
        s = import_shards(merged, out, progress=False)
        assert (s.added, s.already_present, s.skipped) == (20, 0, [])
        assert library_rows(merged) == library_rows(local)
        again = import_shards(merged, out, progress=False)
        assert (again.added, again.already_present) == (0, 20)  # importing twice adds nothing
        assert len(library_rows(merged)) == 20


def test_a_crashed_worker_leaves_whole_shards_and_a_rerun_does_only_the_rest(tmp_path, photos):
    out = tmp_path / "shards"
    with pytest.raises(RuntimeError, match="simulated crash"):
        caption_to_shards([photos], FakeCaptioner(fail_after=3), PROMPT, out, CaptionSettings(batch_size=2),
                          progress=False)
    first = shard_lines(out)
    assert first and len(first) % 5 == 0  # only images with all their tiles answered
    assert not list(out.glob(".*"))
    rest = FakeCaptioner()
    s = caption_to_shards([photos], rest, PROMPT, out, CaptionSettings(batch_size=2), progress=False)
    assert s.captioned_tiles == sum(rest.calls) == 20 - len(first)
    assert s.already_done == len(first) // 5
    keys = [(r["sha256"], r["tile"]) for r in shard_lines(out)]
    assert len(keys) == len(set(keys)) == 20
    nothing = FakeCaptioner()
    assert caption_to_shards([photos], nothing, PROMPT, out, progress=False).captioned_tiles == 0
    assert nothing.calls == []


def test_a_new_model_is_not_taken_as_done_by_old_shards(tmp_path, photos):
    out = tmp_path / "shards"
    caption_to_shards([photos], FakeCaptioner(), PROMPT, out, progress=False)
    s = caption_to_shards([photos], FakeCaptioner(model="other"), PROMPT, out, progress=False)
    assert s.captioned_tiles == 20
    with Store(memory=True) as store:
        import_shards(store, out, progress=False)
        assert store.db.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


def test_importing_a_folder_without_shards_says_how_to_make_them(tmp_path):
    with Store(memory=True) as store, pytest.raises(ImportFormatError, match="--shards DIR"):
        import_shards(store, tmp_path, progress=False)


@pytest.fixture
def fake_backend():
    register("fake", FakeCaptioner)
    yield
    unregister("fake")


def test_cli_caption_to_shards_then_import_the_folder(tmp_path, photos, fake_backend):
    out, db = tmp_path / "shards", tmp_path / "lib.db"
    r = mllmret("caption", photos, "--backend", "fake", "--shards", out, "-q")
    assert "into shards in" in r.output and "captioned 4 images (20 tiles)" in r.output
    assert not db.exists()
    r = mllmret("import", out, "--no-embed", "-q", "--db", db)
    assert "imported 20 captions for 4 images" in r.output
    r = mllmret("import", out, "--no-embed", "-q", "--db", db)
    assert "imported 0 captions" in r.output and "20 already present" in r.output
    Image.new("RGB", (40, 36), "white").save(photos / "new.png")
    r = mllmret("caption", photos, "--backend", "fake", "--shards", out, "-q")
    assert "captioned 1 images (5 tiles)" in r.output and "4 already captioned" in r.output


def test_server_workers_keep_requests_in_flight_and_write_each_answer_to_its_tile(tmp_path, photos,
                                                                                  monkeypatch):
    from stub_server import serve
    from test_streaming import by_size

    from mllm_retrieval.capture.captioners.openai_compat import OpenAICaptioner

    for name in ("MLLMRET_API_KEY", "OPENAI_API_KEY", "MLLMRET_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "shards"
    with serve() as server:
        def slow_by_size(body):
            reply = by_size(body)
            reply.delay = 0.1
            return reply

        server.responder = slow_by_size
        make = lambda: OpenAICaptioner(model="m", base_url=server.base_url, concurrency=6)  # noqa: E731
        s = caption_to_shards([photos], make(), PROMPT, out, CaptionSettings(batch_size=2), progress=False)
        assert s.captioned_tiles == 20 and server.max_in_flight > 2  # not capped by the batch of 2
        with Store(memory=True) as local, Store(memory=True) as merged:
            caption_paths(local, [photos], make(), PROMPT, progress=False)
            import_shards(merged, out, progress=False)
            assert library_rows(merged) == library_rows(local)
    for r in shard_lines(out):
        x0, y0, x1, y1 = r["box"]
        assert r["tags"] == [f"size{x1 - x0}x{y1 - y0}"]
