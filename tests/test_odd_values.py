"""Whatever a database holds (a hand edit, another tool, an older version), search and image routes answer."""

from __future__ import annotations

import json

import pytest
from cli_helpers import mllmret
from web_fixtures import build_library

from mllm_retrieval.capture.parsing import Parsed
from mllm_retrieval.errors import MllmretError
from mllm_retrieval.library.store import Store

ODD = [
    "UPDATE images SET width = 12.5 WHERE id = 1",
    "UPDATE images SET height = 'abc', bytes = 'many' WHERE id = 1",
    "UPDATE images SET width = 9e999, height = -9e999 WHERE id = 2",
    "UPDATE images SET path = X'00ff', external_id = X'41ff' WHERE id = 3",
    "UPDATE images SET sha256 = X'ff' WHERE id = 3",
    "UPDATE images SET width = 100000000000000000, height = 0 WHERE id = 4",
    "UPDATE tiles SET x0 = 'abc' WHERE id = 2",
    "UPDATE tiles SET x1 = 1e999, key = X'ff' WHERE id = 3",
    "UPDATE captions SET tags = 'not json' WHERE id = 1",
    "UPDATE captions SET tags = '5' WHERE id = 2",
    "UPDATE captions SET tags = '[\"red\", 5, null, {\"a\": 1}]', caption = X'ff41' WHERE id = 3",
    "UPDATE captions SET tags = '[NaN]', caption = 12.5, raw = 7 WHERE id = 4",
    "UPDATE runs SET model = X'00', params = 'garbage', prompt_name = 5",
    "UPDATE files SET mtime = 'yesterday' WHERE image_id = 2",
    "UPDATE files SET bytes = 'x', path = X'ff' WHERE image_id = 4",
]


@pytest.fixture
def odd_library(tmp_path):
    db, _photos = build_library(tmp_path)
    with Store(db) as store, store.atomic():
        for sql in ODD:
            store.db.execute(sql)
    return db


def test_api_answers_over_odd_stored_values(odd_library):
    from fastapi.testclient import TestClient

    from mllm_retrieval.web.app import create_app

    with TestClient(create_app(odd_library, mode="keyword"), base_url="http://127.0.0.1") as c:
        ids = [r[0] for r in Store(odd_library).db.execute("SELECT id FROM images").fetchall()]
        for q in ("red", "green", "blue", "evil", "passwd", "square photo", "tile"):
            r = c.get("/api/search", params={"q": q})
            assert r.status_code == 200, (q, r.text)
            for hit in r.json()["results"]:
                assert hit["width"] is None or isinstance(hit["width"], int)
        page = c.get("/api/search", params={"q": "red", "k": 50}).json()
        hits = {h["image_id"]: h for h in page["results"]}
        assert 1 in hits and hits[1]["width"] is None and hits[1]["height"] is None
        for i in ids:
            for route in ("", "/thumbnail", "/file"):
                r = c.get(f"/api/images/{i}{route}")
                assert r.status_code in (200, 404), (i, route, r.status_code, r.text)
            r = c.get("/api/search", params={"like": str(i), "q": "without red"})
            assert r.status_code in (200, 422), (i, r.text)
        assert c.get("/api/library").status_code == 200
        detail = c.get("/api/images/1").json()
        assert detail["width"] is None and all(isinstance(t, str) for tile in detail["tiles"]
                                               for cap in tile["captions"] for t in cap["tags"])


def test_cli_reads_odd_stored_values(odd_library):
    r = mllmret("search", "red", "--mode", "keyword", "--json", "--db", odd_library)
    assert [json.loads(x) for x in r.stdout.splitlines()]
    mllmret("stats", "--db", odd_library)
    mllmret("export", "--db", odd_library)


def test_values_are_checked_when_written(store):
    for width in (12.5, "640", 0, 10**7, True, float("inf")):
        with pytest.raises(MllmretError, match="whole number"):
            store.add_image("a" * 64, "/x.jpg", width, 10)
    image = store.add_image("a" * 64, "/x.jpg", 10, 10)
    run = store.get_or_create_run("b", "m", {})
    [(tile, _)] = store.ensure_tiles(image, [None], 10, 10)
    with pytest.raises(MllmretError, match="must be text"):
        store.add_captions(run.id, [(tile, "raw", Parsed(("ok", 5), "cap"), None)])
    assert store.add_captions(run.id, [(tile, "raw", Parsed(("ok",), "cap"), float("nan"))]) == 1
    assert store.db.execute("SELECT seconds FROM captions").fetchone()[0] is None


@pytest.mark.parametrize("args", [["--like", "1" + "0" * 30, "x"], ["--like", "²", "x"],
                                  ["--run", "1" + "0" * 30, "dog"]])
def test_huge_or_odd_numbers_give_one_line(tmp_path, args):
    db, _ = build_library(tmp_path)
    r = mllmret("search", *args, "--mode", "keyword", "--db", db, ok=False)
    said = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 1 and len(said) == 1 and said[0].startswith("Error: "), r.output
