"""Soak: a `caption` run with the tiny model writes the library while web API searches and thumbnails and
CLI searches run against it. No request fails, nothing prints a traceback, and at the end every search
(API, CLI) agrees with a keyword index rebuilt from the database. Bounded: the run is a few photos, the
whole test well under a minute on an idle machine."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.search.searcher import Searcher  # noqa: E402
from mllm_retrieval.search.text import tokenize  # noqa: E402
from mllm_retrieval.web.app import create_app  # noqa: E402

CLI = "import sys; from mllm_retrieval.cli import app; sys.argv[0] = 'mllmret'; app()"
PHOTOS = 10
BOUND = 50  # seconds the caption run may take before the test gives up on it


def mllmret_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", CLI, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def words_in(db: Path) -> list[str]:
    """Tokens the tiny model has written so far (it writes noise: search for what is there)."""
    try:
        with sqlite3.connect(db) as conn:
            raws = [r[0] for r in conn.execute("SELECT raw FROM captions ORDER BY random() LIMIT 20")]
    except sqlite3.OperationalError:
        return []
    return sorted({t for raw in raws for t in tokenize(raw) if t.isalpha()})


def api_ids(client: TestClient, word: str) -> tuple[list[int], bool]:
    r = client.get("/api/search", params={"q": word, "mode": "keyword", "k": 100})
    assert r.status_code == 200, r.text
    page = r.json()
    return [x["image_id"] for x in page["results"]], page["stale"]


def cli_ids(db: Path, word: str) -> list[int]:
    proc = mllmret_process("search", word, "--mode", "keyword", "--json", "-k", "100", "--db", str(db))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err
    return [json.loads(line)["image_id"] for line in out.splitlines()]


def test_searches_during_a_caption_run_never_fail_and_end_as_a_rebuild_would(tmp_path, tiny_llava):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(PHOTOS):
        Image.new("RGB", (48, 48), (25 * i, 120, 255 - 25 * i)).save(photos / f"{i:02}.png")
    db = tmp_path / "lib.db"
    failures: list[str] = []
    done = threading.Event()
    ran = {"web": 0, "cli": 0}

    def web_searches(client: TestClient, seed: int) -> None:
        rng = random.Random(seed)
        while not done.is_set():
            words = words_in(db) or ["photo"]
            try:
                r = client.get("/api/search", params={"q": rng.choice(words), "mode": "keyword"})
                ran["web"] += 1
                if r.status_code != 200:
                    failures.append(f"search {r.status_code}: {r.text[:200]}")
                    continue
                for hit in r.json()["results"][:2]:
                    t = client.get(hit["thumbnail"]) if hit["thumbnail"] else None
                    if t is not None and t.status_code != 200:
                        failures.append(f"thumbnail {t.status_code}: {t.text[:200]}")
            except Exception as e:  # the test client re-raises what the app raised
                failures.append(f"{type(e).__name__}: {e}")
            time.sleep(0.02)

    def cli_searches() -> None:
        while not done.is_set():
            words = words_in(db)
            if not words:
                time.sleep(0.2)
                continue
            proc = mllmret_process("search", random.choice(words), "--mode", "keyword", "--db", str(db))
            _, err = proc.communicate(timeout=120)
            ran["cli"] += 1
            if proc.returncode != 0 or "Traceback" in err:
                failures.append(f"cli search exit {proc.returncode}: {err[-300:]}")

    caption = mllmret_process("caption", str(photos), "--model", str(tiny_llava), "--grid", "none",
                              "--batch-size", "1", "--max-new-tokens", "8", "-q", "--no-embed",
                              "--no-metadata", "--db", str(db))
    with TestClient(create_app(db, mode="keyword"), base_url="http://127.0.0.1") as client:
        workers = [threading.Thread(target=web_searches, args=(client, s)) for s in (1, 2)]
        workers.append(threading.Thread(target=cli_searches))
        for w in workers:
            w.start()
        try:
            _, err = caption.communicate(timeout=BOUND)
        finally:
            done.set()
            caption.kill()
            for w in workers:
                w.join(timeout=120)
        assert caption.returncode == 0 and "Traceback" not in err, err
        assert f"captioned {PHOTOS} images" in err
        assert not failures, failures[:5]
        assert ran["web"] > 10 and ran["cli"] >= 1, ran

        with Store(db) as store:
            fresh = Searcher(store, persist=False)  # a keyword index built from the database now
            words = words_in(db)[:6]
            assert words
            for n, word in enumerate(words):
                want = [r.image_id for r in fresh.search(word, k=100, mode="keyword")]
                deadline = time.monotonic() + 30
                while (got := api_ids(client, word))[1] and time.monotonic() < deadline:
                    time.sleep(0.05)  # a background catch-up finishing
                assert got == (want, False), word
                if n < 2:  # a CLI process takes seconds to start
                    assert cli_ids(db, word) == want, word
