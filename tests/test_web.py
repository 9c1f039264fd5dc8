"""The JSON API under `mllmret serve`, through the framework's test client."""

import io
import json
import os
import re
import shutil
import socket
from collections import Counter

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")

from conftest import COCO_IMAGES, SHARED  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402
from web_fixtures import IMG_TAG, SCRIPT_TAG, build_library  # noqa: E402

from mllm_retrieval import config  # noqa: E402
from mllm_retrieval.cli import app as cli  # noqa: E402
from mllm_retrieval.errors import MllmretError  # noqa: E402
from mllm_retrieval.library.jsonl import import_jsonl  # noqa: E402
from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.search.fusion import MODES  # noqa: E402
from mllm_retrieval.search.searcher import DEFAULT_MODE  # noqa: E402
from mllm_retrieval.search.text import tokenize  # noqa: E402
from mllm_retrieval.web.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def shared_library(tmp_path_factory):
    return build_library(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def shared_client(shared_library):
    """For tests that only read; BM25 only unless a request names another mode."""
    with TestClient(create_app(shared_library[0], mode="keyword"), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    """A tiny random sentence-transformers model: every text is "similar" (cosine about 0.8), which is
    enough to see meaning-only hits and the filters; what is near what is tested in test_fusion.py."""
    from tiny_embedder import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture(scope="module")
def hybrid_client(shared_library, tiny_st):
    """The server's default mode (hybrid), with the tiny embedder."""
    with TestClient(create_app(shared_library[0], embedder=str(tiny_st)), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def library(tmp_path):
    return build_library(tmp_path)


@pytest.fixture
def client(library):
    """For tests that change the library."""
    with TestClient(create_app(library[0], mode="keyword"), base_url="http://127.0.0.1") as c:
        yield c


def ids_by_name(client) -> dict[str, int]:
    hits = client.get("/api/search", params={"q": "tile", "k": 100}).json()["results"]
    return {os.path.basename(h["path"]): h["image_id"] for h in hits}


def test_search_page_fields_and_pagination(shared_client):
    client = shared_client
    page = client.get("/api/search", params={"q": "green tile"}).json()
    assert page["empty"] is None and page["has_more"] is False
    first = page["results"][0]
    assert first["rank"] == 1 and first["path"].endswith(("green.png", "split.png"))
    assert first["matched"] == ["green", "tile"] and first["score"] > 0
    assert first["thumbnail"] == f"/api/images/{first['image_id']}/thumbnail"
    assert "green" in first["tags"] and first["width"] and first["height"]
    split = next(r for r in page["results"] if r["path"].endswith("split.png"))
    assert split["tile"] in ("32,0,64,32", "32,32,64,64") and split["box"][0] == 32  # a green tile

    everything = client.get("/api/search", params={"q": "tile", "k": 100}).json()["results"]
    assert len(everything) == 4
    pages = [client.get("/api/search", params={"q": "tile", "k": 3, "offset": o}).json() for o in (0, 3)]
    assert [p["has_more"] for p in pages] == [True, False]
    assert [r["image_id"] for p in pages for r in p["results"]] == [r["image_id"] for r in everything]
    assert [r["rank"] for r in pages[1]["results"]] == [4]


def test_image_detail_has_every_tile_and_run(shared_client):
    client = shared_client
    blue = ids_by_name(client)["blue.jpg"]
    d = client.get(f"/api/images/{blue}").json()
    assert (d["width"], d["height"]) == (400, 300) and d["file"] == f"/api/images/{blue}/file"
    assert [t["key"] for t in d["tiles"]][0] == "full" and len(d["tiles"]) == 5
    assert {tuple(t["box"]) for t in d["tiles"][1:]} == {(0, 0, 200, 150), (200, 0, 400, 150),
                                                          (0, 150, 200, 300), (200, 150, 400, 300)}
    full = d["tiles"][0]["captions"]
    assert [c["model"] for c in full] == ["fake-model", "evil-model"]
    assert full[0]["tags"] == ["blue", "size400x300"] and full[0]["raw"].startswith("Tags: blue")
    assert full[1]["tags"] == [SCRIPT_TAG, "evil"] and IMG_TAG in full[1]["caption"]


def test_thumbnails_are_cached_jpegs_with_etag(shared_client, shared_library):
    client, library = shared_client, shared_library
    blue = ids_by_name(client)["blue.jpg"]
    r = client.get(f"/api/images/{blue}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with Store(library[0]) as store:
        sha = store.image_row(blue)["sha256"]
    assert r.headers["etag"] == f'"{sha}"' and "max-age" in r.headers["cache-control"]
    cached = config.data_dir() / "thumbs" / sha[:2] / f"{sha}-320.jpg"
    assert cached.read_bytes() == r.content
    with Image.open(cached) as im:
        assert im.size == (320, 240)
    again = client.get(f"/api/images/{blue}/thumbnail", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and not again.content

    original = client.get(f"/api/images/{blue}/file")
    assert original.headers["content-type"] == "image/jpeg"
    assert original.content == (library[1] / "blue.jpg").read_bytes()
    red = ids_by_name(client)["red.png"]
    assert client.get(f"/api/images/{red}/file").headers["content-type"] == "image/png"


@pytest.mark.parametrize("bad", [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "1.0", "-1", "0x1",
    "1e3", "%201", "\uff11", "99999", "1;DROP TABLE images", "9" * 40,
])
@pytest.mark.parametrize("suffix", ["", "/thumbnail", "/file"])
def test_only_ids_in_the_database_are_served(shared_client, bad, suffix):
    r = shared_client.get(f"/api/images/{bad}{suffix}")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert "error" in r.json() and "root:" not in r.text


def test_files_never_indexed_gone_or_changed_are_not_served(client, library):
    with Store(library[0]) as store:
        outside = store.db.execute("SELECT id, path FROM images WHERE external_id = 'outside'").fetchone()
    assert outside[1] == "/etc/passwd"  # the import recorded the name, but never read the file
    detail = client.get(f"/api/images/{outside[0]}").json()
    assert detail["file"] is None and detail["status"] == "external"
    for suffix in ("/file", "/thumbnail"):
        r = client.get(f"/api/images/{outside[0]}{suffix}")
        assert r.status_code == 404 and "root:" not in r.text

    ids = ids_by_name(client)
    (library[1] / "red.png").unlink()
    r = client.get(f"/api/images/{ids['red.png']}/file")
    assert r.status_code == 404 and "caption its folder again" in r.json()["error"]
    Image.new("RGB", (64, 64), "white").save(library[1] / "green.png")  # changed since indexing
    assert client.get(f"/api/images/{ids['green.png']}/thumbnail").status_code == 404


def test_hostile_text_stays_data(shared_client):
    client = shared_client
    r = client.get("/api/search", params={"q": f"{SCRIPT_TAG} evil"})
    assert r.headers["content-type"] == "application/json"
    page = r.json()
    assert page["query"] == f"{SCRIPT_TAG} evil" and SCRIPT_TAG in page["results"][0]["tags"]
    html = client.get("/", params={"q": SCRIPT_TAG})
    assert html.headers["content-type"].startswith("text/html") and "alert" not in html.text
    assert "script-src" not in html.headers["content-security-policy"]  # default-src 'self' covers it
    assert "default-src 'self'" in html.headers["content-security-policy"]
    assert html.headers["x-content-type-options"] == "nosniff"


def test_empty_states_then_the_library_appears(tmp_path):
    db = tmp_path / "later.db"
    with TestClient(create_app(db, mode="keyword"), base_url="http://localhost") as c:
        page = c.get("/api/search", params={"q": "red"}).json()
        assert page["empty"] == "no_database" and "mllmret caption" in page["hint"]
        assert str(db) in page["hint"] and not db.exists()  # serving never creates a database
        assert c.get("/api/library").json()["exists"] is False
        Store(db).close()
        assert c.get("/api/search", params={"q": "red"}).json()["empty"] == "no_captions"
        (tmp_path / "c.jsonl").write_text('{"image_id": "r1", "text": "Tags: red"}\n')
        with Store(db) as store:
            import_jsonl(store, tmp_path / "c.jsonl", progress=False)
        assert c.get("/api/search", params={"q": "red"}).json()["results"][0]["external_id"] == "r1"
        assert c.get("/api/search", params={"q": "-red"}).json()["empty"] == "no_words"


def test_new_captions_show_up_without_a_restart(client, library, tmp_path):
    assert client.get("/api/search", params={"q": "zebra"}).json()["results"] == []
    (tmp_path / "z.jsonl").write_text('{"image_id": "z1", "text": "Tags: zebra"}\n')
    with Store(library[0]) as store:
        import_jsonl(store, tmp_path / "z.jsonl", progress=False)
    [hit] = client.get("/api/search", params={"q": "zebra"}).json()["results"]
    assert hit["external_id"] == "z1" and hit["thumbnail"] is None


@pytest.mark.parametrize("params", [{"q": "red", "k": 0}, {"q": "red", "k": "many"}, {"q": "x" * 3000},
                                    {"q": "red", "offset": -1}, {"q": "red", "mode": "fuzzy"},
                                    {"q": "red", "mode": "Hybrid"}, {"q": "red", "mode": ""}])
def test_bad_parameters_are_400_json(shared_client, params):
    r = shared_client.get("/api/search", params=params)
    assert r.status_code == 400 and r.json()["error"].startswith("bad request")
    if "mode" in params:
        assert "bad request (mode: Input should be 'keyword', 'semantic' or 'hybrid')" == r.json()["error"]


def name(hit: dict) -> str:
    return os.path.basename(hit["path"])


def test_hybrid_is_the_default_and_meaning_only_hits_say_so(hybrid_client):
    client = hybrid_client
    assert client.get("/api/library").json()["mode"] == DEFAULT_MODE == "hybrid"
    page = client.get("/api/search", params={"q": "red"}).json()
    assert page["mode"] == page["default_mode"] == "hybrid"
    assert page["suggested"] == []  # six images: too few for feedback (expansion.FEEDBACK_SHARE)
    hits = page["results"]
    assert name(hits[0]) in ("red.png", "split.png")  # the best keyword match, in both rankings, comes first
    both = [h for h in hits if h["via"] == "both"]
    assert sorted(map(name, both)) == ["red.png", "split.png"]
    for hit in both:
        assert hit["matched"] == ["red"] and hit["bm25"] > 0 and hit["similarity"]
    meaning = [h for h in hits if h["via"] != "both"]
    assert sorted(map(name, meaning)) == ["blue.jpg", "green.png", "passwd"]
    for hit in meaning:
        assert hit["via"] == "meaning" and hit["matched"] == [] and hit["bm25"] is None
        assert hit["similarity"] >= 0.2 and hit["tile"] is None and hit["tags"]

    keyword = client.get("/api/search", params={"q": "red", "mode": "keyword"}).json()
    assert keyword["mode"] == "keyword" and keyword["default_mode"] == "hybrid"
    assert [(name(h), h["via"], h["similarity"]) for h in keyword["results"]] == [
        ("red.png", "keyword", None), ("split.png", "keyword", None)]
    semantic = client.get("/api/search", params={"q": "red", "mode": "semantic"}).json()["results"]
    assert sorted(map(name, semantic)) == sorted(map(name, hits))
    assert all(h["bm25"] is None and h["via"] == ("both" if h["matched"] else "meaning") for h in semantic)
    pages = [client.get("/api/search", params={"q": "red", "k": 3, "offset": o}).json() for o in (0, 3)]
    assert [h["image_id"] for p in pages for h in p["results"]] == [h["image_id"] for h in hits]


@pytest.mark.parametrize("mode", MODES)
def test_minus_word_and_phrases_filter_in_every_mode(hybrid_client, mode):
    def names(q: str) -> list[str]:
        page = hybrid_client.get("/api/search", params={"q": q, "mode": mode}).json()
        return sorted(map(name, page["results"]))

    kept = names("tile -red")
    assert "red.png" not in kept and "split.png" not in kept and {"green.png", "blue.jpg"} <= set(kept)
    assert names('"green tile"') == ["green.png", "split.png"]
    assert names("+blue tile") == ["blue.jpg"]


def test_an_embedder_that_cannot_load_is_one_line_of_json(shared_library, tiny_st, tmp_path):
    broken = shutil.copytree(tiny_st, tmp_path / "broken")
    (broken / "model.safetensors").unlink()

    class Exploding:
        name = "exploding"

        @property
        def model(self):
            raise RuntimeError("out of memory\n  a second line")

    for embedder, says in [(str(broken), f"cannot load embedder '{broken}': "),
                           (Exploding(), "cannot load the embedder: RuntimeError: out of memory")]:
        with TestClient(create_app(shared_library[0], embedder=embedder), base_url="http://127.0.0.1") as c:
            for mode in ({"mode": "hybrid"}, {"mode": "semantic"}, {}):
                r = c.get("/api/search", params={"q": "red", **mode})
                assert r.status_code == 500 and r.headers["content-type"] == "application/json"
                error = r.json()["error"]
                assert error.startswith(says) and error.endswith("keyword search still works (mode=keyword)")
                assert "\n" not in error and "Traceback" not in r.text
            r = c.get("/api/search", params={"q": "red", "mode": "keyword"})
            assert r.status_code == 200 and len(r.json()["results"]) == 2


def like(client, image_id, q: str = "", **params) -> dict:
    """A "more like this, but …" search: `q` is the modification."""
    r = client.get("/api/search", params={"like": image_id, "q": q, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_more_like_this_but_says_what_it_composed_and_leaves_the_reference_out(shared_client):
    ids = ids_by_name(shared_client)
    page = like(shared_client, ids["blue.jpg"], "green instead of blue")
    ref = page["like"]
    assert ref["image_id"] == ids["blue.jpg"] and ref["path"].endswith("blue.jpg")
    assert (ref["width"], ref["height"], ref["external_id"]) == (400, 300, None)
    assert ref["thumbnail"] == f"/api/images/{ids['blue.jpg']}/thumbnail"
    assert ref["url"] == f"/api/images/{ids['blue.jpg']}"
    assert ref["modification"] == page["query"] == "green instead of blue" and page["mode"] == "keyword"
    assert (ref["dropped"], ref["added"], ref["excluded"]) == (["blue"], ["green"], ["blue"])
    assert {"size400x300", "tile", "evil", "script"} <= set(ref["kept"]) and "blue" not in ref["kept"]
    assert ref["composed"].startswith("green ") and page["empty"] is None
    hits = page["results"]
    assert "blue.jpg" not in map(name, hits) and sorted(map(name, hits[:2])) == ["green.png", "split.png"]
    assert hits[0]["matched"][0] == "green" and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert all(h["thumbnail"] and h["tags"] for h in hits)


def test_more_like_this_with_no_change_searches_the_reference_words_and_pages(shared_client):
    ids = ids_by_name(shared_client)
    page = like(shared_client, ids["red.png"], k=100)
    ref = page["like"]
    assert ref["kept"] == ["red", "size64x48", "tile"]
    assert ref["dropped"] == ref["added"] == ref["excluded"] == []
    hits = page["results"]
    assert [name(h) for h in hits] == ["split.png", "green.png", "blue.jpg"]  # red.png itself: never
    pages = [like(shared_client, ids["red.png"], k=2, offset=o) for o in (0, 2)]
    assert [p["has_more"] for p in pages] == [True, False] and all(p["like"] == ref for p in pages)
    assert [h["image_id"] for p in pages for h in p["results"]] == [h["image_id"] for h in hits]
    assert [h["rank"] for h in pages[1]["results"]] == [3]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("change", ["without red", "-red", "no red"])
def test_a_removed_word_excludes_every_image_holding_it_in_every_mode(hybrid_client, mode, change):
    ids = ids_by_name(hybrid_client)
    page = like(hybrid_client, ids["split.png"], change, mode=mode)
    assert page["mode"] == mode and page["like"]["excluded"] == ["red"] and page["like"]["dropped"] == ["red"]
    found = set(map(name, page["results"]))
    assert {"green.png", "blue.jpg"} <= found and not found & {"red.png", "split.png"}
    assert all("red" not in h["tags"] and "red" not in h["matched"] for h in page["results"])


def test_nothing_left_to_search_for_is_an_empty_page_not_an_error(shared_client):
    red = ids_by_name(shared_client)["red.png"]
    page = like(shared_client, red, "without red, size64x48 or tile")
    assert page["empty"] == "no_words" and page["results"] == [] and "nothing left" in page["message"]
    assert page["like"]["kept"] == [] and page["like"]["added"] == []


@pytest.mark.parametrize("bad", ["abc", "1.0", "-1", "+1", " 1", "1_0", "0x1", "\uff11", "/etc/passwd",
                                 "../../etc/passwd", "red.png", "9" * 19, ""])
def test_like_takes_only_an_image_id(shared_client, bad):
    r = shared_client.get("/api/search", params={"like": bad, "q": "tile"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith("bad request (like:") and "root:" not in r.text


def test_like_an_unknown_image_or_one_without_text(client, library):
    r = client.get("/api/search", params={"like": "99999", "q": "tile"})
    assert r.status_code == 404 and r.json() == {"error": "no such image in this database (like=99999)"}
    with Store(library[0]) as store:
        bare = store.add_image(None, None, 10, 10, external_id="no-captions")
    r = client.get("/api/search", params={"like": str(bare)})
    assert r.status_code == 422 and "no tags or captions" in r.json()["error"]
    outside = client.get("/api/search", params={"q": "passwd"}).json()["results"][0]
    page = like(client, outside["image_id"], "a tile")  # an imported image without a file: a reference too
    assert page["like"]["thumbnail"] is None and page["like"]["path"] == "/etc/passwd"
    assert page["like"]["added"] == ["tile"] and len(page["results"]) == 4


def test_like_before_there_is_a_library(tmp_path):
    with TestClient(create_app(tmp_path / "none.db", mode="keyword"), base_url="http://127.0.0.1") as c:
        page = c.get("/api/search", params={"like": "1"}).json()
        assert page["empty"] == "no_database" and page["like"] is None


def test_openapi_schema_and_no_cdn_pages(shared_client):
    client = shared_client
    schema = client.get("/api/openapi.json").json()
    paths = {"/api/search", "/api/images/{image_id}", "/api/images/{image_id}/thumbnail", "/api/library"}
    assert paths <= set(schema["paths"])
    [mode] = [p for p in schema["paths"]["/api/search"]["get"]["parameters"] if p["name"] == "mode"]
    assert mode["schema"]["anyOf"][0]["enum"] == list(MODES)
    like_ = schema["components"]["schemas"]["LikeInfo"]["properties"]
    assert {"image_id", "thumbnail", "kept", "dropped", "added", "excluded"} <= set(like_)
    assert client.get("/docs").status_code == 404
    for name in ("index.html", "app.js", "style.css"):
        text = client.get(f"/static/{name}").text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_other_host_headers_are_refused(shared_client):
    assert shared_client.get("/api/library", headers={"Host": "attacker.example"}).status_code == 400


def test_serve_cli_help_and_one_line_errors(tmp_path):
    runner = CliRunner()
    assert "127.0.0.1" in runner.invoke(cli, ["serve", "--help"]).stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = runner.invoke(cli, ["serve", "--port", str(port), "--db", str(tmp_path / "x.db")])
    assert r.exit_code == 1 and f"port {port} is in use" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "junk.db").write_text("not a database")
    r = runner.invoke(cli, ["serve", "--db", str(tmp_path / "junk.db"), "--port", "1"])
    assert r.exit_code == 1 and "file is not a database" in r.stderr


def test_serve_passes_mode_and_embedder_through(tmp_path, tiny_st, monkeypatch):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app_, **_: served.append(app_.state.library))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    runner, db = CliRunner(), str(tmp_path / "x.db")
    help_ = runner.invoke(cli, ["serve", "--help"]).stdout
    assert "--mode" in help_ and "--embedder" in help_ and "MLLMRET_SEARCH_MODE" in help_
    r = runner.invoke(cli, ["serve", "--port", port, "--db", db])
    assert r.exit_code == 0 and "hybrid search by default" in r.stderr
    monkeypatch.setenv("MLLMRET_SEARCH_MODE", "keyword")
    monkeypatch.setenv("MLLMRET_EMBEDDER", str(tiny_st))
    assert runner.invoke(cli, ["serve", "--port", port, "--db", db]).exit_code == 0
    assert runner.invoke(cli, ["serve", "--port", port, "--db", db, "--mode", "semantic"]).exit_code == 0
    assert [(lib.mode, lib.embedder) for lib in served] == [
        ("hybrid", None), ("keyword", str(tiny_st)), ("semantic", str(tiny_st))]

    (tmp_path / "model.txt").write_text("not a model")
    r = runner.invoke(cli, ["serve", "--port", port, "--db", db, "--embedder", str(tmp_path / "model.txt")])
    assert r.exit_code == 1 and re.search("embedder .* is a file", r.stderr) and r.stderr.count("\n") == 1
    assert runner.invoke(cli, ["serve", "--mode", "fuzzy"]).exit_code == 2
    with pytest.raises(MllmretError, match="unknown search mode 'fuzzy'"):
        create_app(db, mode="fuzzy")
    assert len(served) == 3


def test_a_library_made_by_mllmret_caption_with_a_tiny_model(photos, tiny_llava, tmp_path):
    db = tmp_path / "tiny.db"
    r = CliRunner().invoke(cli, ["caption", str(photos), "--model", str(tiny_llava), "--max-new-tokens", "8",
                                 "--grid", "none", "-q", "--db", str(db)])
    assert r.exit_code == 0, r.output
    with Store(db) as store:
        raw = store.db.execute("SELECT raw FROM captions").fetchone()[0]
    word = next(t for t in tokenize(raw) if t.isalpha())  # the tiny model writes noise: find a word of it
    with TestClient(create_app(db, mode="keyword"), base_url="http://127.0.0.1") as c:
        hit = c.get("/api/search", params={"q": word}).json()["results"][0]
        assert word in hit["matched"] and c.get(hit["thumbnail"]).status_code == 200
        assert c.get(hit["url"]).json()["tiles"][0]["captions"][0]["model"] == str(tiny_llava)


def test_a_library_of_imported_real_captions(tmp_path):
    """Published LLaVA descriptions of the COCO photos in ../shared/data (skipped when absent)."""
    images, captions = COCO_IMAGES, SHARED / "vlm_captions" / "halc_greedy64_val2014.jsonl"
    if not (images.is_dir() and captions.is_file()):
        pytest.skip(f"no real captions or images under {SHARED}")
    local = {int(p.stem): p for p in images.glob("*.jpg")}
    lines = [json.loads(line) for line in captions.open()]
    rows = [{**r, "path": str(local[r["image_id"]])} for r in lines if r["image_id"] in local]
    assert rows, "the shared COCO photos and captions should overlap"
    (tmp_path / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "real.db"
    assert CliRunner().invoke(cli, ["import", str(tmp_path / "real.jsonl"), "--db", str(db)]).exit_code == 0
    word = Counter(t for r in rows for t in set(tokenize(r["text"]))).most_common(1)[0][0]
    with TestClient(create_app(db, mode="keyword"), base_url="http://127.0.0.1") as c:
        page = c.get("/api/search", params={"q": word, "k": 50}).json()
        assert page["results"] and all(word in r["matched"] for r in page["results"])
        hit = page["results"][0]
        assert hit["tags"] and hit["tile"] == "full"  # no tags in this text: chips are its caption's words
        thumb = c.get(hit["thumbnail"])
        assert thumb.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumb.content)).size) == 320
        models = {cap["model"] for cap in c.get(hit["url"]).json()["tiles"][0]["captions"]}
        assert models and models <= {"llava-v1.5-7b", "minigpt4-llama2-7b", "mplug-owl2-7b"}
