"""Composed search, "like this photo, but …": references by id, path or new file; composition; the CLI."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from cli_helpers import mllmret
from fakes import FakeCaptioner
from library_helpers import PARK, add_library
from PIL import Image
from test_fusion import FakeEmbedder
from test_search import FILLER, add

from mllm_retrieval.capture.captioners import register, unregister
from mllm_retrieval.capture.pipeline import caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.capture.tiling import Box
from mllm_retrieval.composed.like import (
    compose_like,
    image_text,
    modification_text,
    reference_captioner,
    resolve_reference,
    search_like,
)
from mllm_retrieval.errors import MllmretError
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index.store_index import StoreIndex
from mllm_retrieval.search.searcher import Searcher


def names(results):
    return [r.path.rsplit("/", 1)[1].removesuffix(".jpg") for r in results]


@pytest.fixture
def park(store):
    """A dog on a leash in a park (the reference), and images sharing some of it."""
    return add_library(store, {
        **PARK,
        "snowdog": "Tags: dog, snow\nCaption: A dog in the snow.",
        "catpark": "Tags: cat, park\nCaption: A cat in a park.",
    })


# references
def test_reference_by_id_holds_the_full_images_tags_and_caption(store, park):
    for ref in (park["ref"], str(park["ref"])):
        r = resolve_reference(store, ref)
        assert (r.image_id, r.path, r.source) == (park["ref"], "/photos/ref.jpg", "library")
        assert r.text == "dog, leash, park. A dog on a leash in a park."


def test_reference_text_falls_back_to_the_tiles_when_the_full_image_has_none(store):
    full_and_tiles = add(store, "both", "Caption: A street.", tiles=[(Box(0, 0, 50, 50), "Tags: lamp")])
    tiles_only = add(store, "tiles", "", tiles=[(Box(0, 0, 50, 50), "Tags: bench"),
                                                (Box(50, 0, 100, 50), "Caption: A pigeon.")])
    assert image_text(store, full_and_tiles) == "A street."  # the tile's lamp is not the whole picture
    assert image_text(store, tiles_only) == "bench. A pigeon."


def test_reference_text_follows_the_selected_runs(store):
    a, b = store.get_or_create_run("t", "model-a", {}), store.get_or_create_run("t", "model-b", {})
    image = add(store, "x", "Tags: dog", run=a)
    add(store, "x", "Tags: wolf", run=b)  # same image (same sha), another run
    assert image_text(store, image) == "dog, wolf."
    assert image_text(store, image, [b.id]) == "wolf."
    with pytest.raises(MllmretError, match="no tags or captions in the selected runs"):
        resolve_reference(store, image, [store.get_or_create_run("t", "model-c", {}).id])


@pytest.fixture
def library(store, photos):
    """The `photos` folder captioned by the fake captioner (real files, a real run)."""
    caption_paths(store, [photos], FakeCaptioner(), load_prompt(), progress=False)
    return photos


def test_reference_by_path_absolute_relative_symlinked_or_same_content(store, library, tmp_path, monkeypatch):
    red = store.file_row(str(library / "red.jpg"))["image_id"]
    assert resolve_reference(store, str(library / "red.jpg")).image_id == red
    monkeypatch.chdir(library / "sub")
    assert resolve_reference(store, "../red.jpg").image_id == red
    link = tmp_path / "link"
    link.symlink_to(library)
    assert resolve_reference(store, link / "red.jpg").image_id == red
    copy = tmp_path / "copy-of-red.jpg"
    shutil.copy(library / "red.jpg", copy)
    r = resolve_reference(store, copy)
    assert (r.image_id, r.source) == (red, "library") and r.text.startswith("red, size64x48.")


def test_new_file_is_captioned_but_not_stored(store, library, tmp_path):
    new = tmp_path / "new.png"
    Image.new("RGB", (30, 20), "blue").save(new)
    before = store.stats()
    fake = FakeCaptioner()
    r = resolve_reference(store, new, captioner=fake)
    assert (r.image_id, r.path, r.source) == (None, str(new), "captioned")
    assert r.text == "blue, size30x20. A blue tile." and fake.calls == [1]  # the full image only
    assert store.stats() == before


def test_new_file_with_add_goes_into_the_latest_runs_captioner_and_run(store, library, tmp_path):
    register("fake", FakeCaptioner)
    try:
        run = store.latest_captioned_run()
        captioner, prompt = reference_captioner(store)
        assert (captioner.backend, captioner.model_id, prompt.text) == ("fake", "fake-model",
                                                                         load_prompt().text)
        new = tmp_path / "new.png"
        Image.new("RGB", (44, 36), "green").save(new)
        r = resolve_reference(store, new, add=True)
    finally:
        unregister("fake")
    assert r.source == "added" and r.image_id is not None and r.text == "green, size44x36. A green tile."
    assert store.file_row(str(new))["image_id"] == r.image_id
    counts = store.db.execute("SELECT count(*), count(DISTINCT run_id) FROM captions c JOIN tiles t "
                              "ON t.id = c.tile_id WHERE t.image_id = ?", [r.image_id]).fetchone()
    assert counts == (5, 1) and store.latest_captioned_run().id == run.id  # full + 2x2 tiles, in the same run
    assert resolve_reference(store, new).source == "library"  # the next time it is a library image


def test_the_latest_runs_backend_must_be_able_to_caption(store, park, tmp_path):
    new = tmp_path / "new.png"
    Image.new("RGB", (30, 20), "blue").save(new)
    with pytest.raises(MllmretError, match=r"latest run \(run 1: t m\).*--caption-backend"):
        resolve_reference(store, new)
    with pytest.raises(MllmretError, match="'nope' cannot caption"):
        resolve_reference(store, new, backend="nope")


@pytest.mark.parametrize("make, message", [
    (lambda d: "999", "no image with id 999"),
    (lambda d: str(d / "missing.jpg"), "no such file"),
    (lambda d: str(d), "not a file"),
    (lambda d: (d / "notes.txt").write_text("hi") and str(d / "notes.txt"), "not an image file type"),
    (lambda d: (d / "broken.jpg").write_bytes(b"\xff\xd8 not really") and str(d / "broken.jpg"),
     "not a readable image"),
    (lambda d: (d / "empty.png").write_bytes(b"") == 0 and str(d / "empty.png"), "empty file"),
])
def test_bad_references_are_one_line_errors(store, park, tmp_path, make, message):
    with pytest.raises(MllmretError, match=message) as e:
        resolve_reference(store, make(tmp_path), captioner=FakeCaptioner())
    assert "\n" not in str(e.value)


# composing and searching
def test_kept_dropped_added_and_excluded_words(store, park):
    ref = resolve_reference(store, park["ref"])
    c = compose_like(ref.text, "without the leash, in the snow")
    assert (c.kept, c.dropped, c.added, c.exclude) == (("dog", "park"), ("leash",), ("snow",), ("leash",))
    assert c.weight_map() == {"snow": 1.0, "dog": 0.5, "park": 0.5}
    assert c.query().exclude == ("leash",) and "leash" not in c.query().ranking_terms


def test_search_operators_in_the_modification_read_as_words():
    assert modification_text('a cat -leash -"red collar" +grass') == (
        "a cat , without leash, , without red collar, grass")
    c = compose_like("dog, leash, park.", "-leash")
    assert c.exclude == ("leash",) and c.dropped == ("leash",)


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_the_reference_is_never_a_result(store, park, mode):
    searcher = Searcher(store, mode=mode, embedder=FakeEmbedder())
    ref = resolve_reference(store, park["ref"])
    plain = searcher.search("dog leash park", 20)
    assert park["ref"] in [r.image_id for r in plain]  # it would be the best match
    like = search_like(searcher, ref, "", k=20)
    ids = [r.image_id for r in like.results]
    assert ids and park["ref"] not in ids
    assert [r.rank for r in like.results] == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_negation_excludes_every_image_holding_the_word(store, park, mode):
    searcher = Searcher(store, mode=mode, embedder=FakeEmbedder())
    result = search_like(searcher, resolve_reference(store, park["ref"]), "without the leash", k=20)
    got = names(result.results)
    assert got and "leashed" not in got and "ref" not in got
    if mode == "keyword":
        assert got[0] == "dogpark"  # dog and park kept, no leash


def test_added_words_outweigh_kept_reference_words(store):
    ref = add(store, "ref", "Tags: sand, sunset, palm")
    add(store, "kept", "Tags: sand, sunset")  # two words of the reference
    add(store, "asked", "Tags: surfboard, wave")  # the one word the modification asks for
    for i, text in enumerate(FILLER):
        add(store, f"filler{i}", f"Caption: {text}.")
    searcher = Searcher(store)
    unweighted = names(searcher.search("surfboard sand sunset palm"))
    assert unweighted.index("kept") < unweighted.index("asked")
    like = search_like(searcher, resolve_reference(store, ref), "add a surfboard")
    assert like.composition.added == ("surfboard",) and names(like.results)[:2] == ["asked", "kept"]
    [asked, kept] = like.results[:2]
    assert asked.score == pytest.approx(searcher.search("surfboard")[0].score)
    assert kept.score == pytest.approx(0.5 * searcher.search("+sand +sunset")[0].score)


def test_weighted_scores_agree_across_engines(store, park):
    terms, weights = ("snow", "dog", "park"), (1.0, 0.5, 0.25)
    fast, ref = StoreIndex(store, engine="sparse"), StoreIndex(store, engine="rank-bm25")
    a, b = fast.search(terms, 20, weights=weights), ref.search(terms, 20, weights=weights)
    assert [i for i, _ in a] == [i for i, _ in b] and np.allclose([s for _, s in a], [s for _, s in b])
    ids, scores = fast.scores(terms, exclude=("leash",), weights=weights)
    by_id = dict(zip(ids.tolist(), scores.tolist(), strict=True))
    single = {t: dict(fast.search([t], 20)) for t in terms}
    for image_id, score in by_id.items():
        assert score == pytest.approx(sum(w * single[t].get(image_id, 0.0) for t, w in zip(terms, weights,
                                                                                          strict=True)))
    assert park["leashed"] not in by_id and park["ref"] not in by_id


def test_a_given_query_vector_replaces_the_embedded_text(store, park):
    fake = FakeEmbedder()
    searcher = Searcher(store, mode="semantic", embedder=fake)
    ref = resolve_reference(store, park["ref"])
    cat = 3 * fake.encode_query("cat")  # any length: it is made unit length
    fake.queries.clear()
    result = search_like(searcher, ref, "", k=3, query_vector=cat)
    assert result.results[0].similarity == pytest.approx(np.sqrt(0.5))  # cat and park: cos 45°
    assert names(result.results)[0] == "catpark" and fake.queries == []
    with pytest.raises(MllmretError, match="dimensions"):
        searcher.search("dog", query_vector=np.ones(3))


def test_nothing_left_to_search_for(store, park):
    lone = add(store, "lone", "Tags: kayak")
    with pytest.raises(MllmretError, match="nothing left to search for"):
        search_like(Searcher(store), resolve_reference(store, lone), "without the kayak")


def test_result_to_dict(store, park):
    result = search_like(Searcher(store), resolve_reference(store, park["ref"]), "in the snow", k=2)
    d = result.to_dict()
    assert d["reference"]["image_id"] == park["ref"] and d["added"] == ["snow"] and d["excluded"] == []
    assert d["rewrite"] is None and d["warning"] is None and len(d["results"]) == 2
    assert "results" not in result.to_dict(results=False)
    json.dumps(d)


# the command line
@pytest.fixture
def cli_library(tmp_path, photos):
    """A database file captioned by the fake backend, which stays registered for the test."""
    register("fake", FakeCaptioner)
    db = tmp_path / "lib.db"
    mllmret("caption", photos, "--backend", "fake", "-q", "--db", db)
    Image.new("RGB", (64, 48), (250, 10, 10)).save(photos / "red2.png")
    mllmret("caption", photos / "red2.png", "--backend", "fake", "-q", "--db", db)
    yield db
    unregister("fake")


def test_cli_like_by_id_shows_the_composition_then_results(cli_library, photos):
    with Store(cli_library) as store:
        red = store.file_row(str(photos / "red.jpg"))["image_id"]
    r = mllmret("search", "--like", red, "without", "blue", "--mode", "keyword", "--db", cli_library)
    lines = r.stdout.splitlines()
    assert lines[0] == f"reference: #{red} {photos / 'red.jpg'}"
    assert lines[1:5] == ["kept: red, size64x48, tile", "dropped: -", "added: -", "excluded: blue"]
    rows = lines[5:]
    assert rows and "red2.png" in rows[0] and not any(row.split()[2].endswith("red.jpg") for row in rows)
    assert not any("blue" in row for row in rows)


def test_cli_like_json_first_line_is_the_composition(cli_library, photos):
    r = mllmret("search", "--like", photos / "red.jpg", "a", "green", "tile", "--json", "--mode", "keyword",
                "--db", cli_library)
    first, *hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert set(first) >= {"reference", "kept", "dropped", "added", "excluded", "rewrite", "warning"}
    assert first["reference"]["path"] == str(photos / "red.jpg") and first["added"] == ["green", "tile"]
    assert first["rewrite"] is None and first["warning"] is None
    assert hits and {"rank", "image_id", "path"} <= set(hits[0])
    assert first["reference"]["image_id"] not in [h["image_id"] for h in hits]


def test_cli_like_new_file_is_not_stored_unless_add(cli_library, tmp_path):
    new = tmp_path / "new.png"
    Image.new("RGB", (64, 48), (240, 20, 20)).save(new)
    before = json.loads(mllmret("stats", "--json", "--db", cli_library).stdout)
    count = before["images"]
    r = mllmret("search", "--like", new, "--mode", "keyword", "--db", cli_library)
    assert "(new file, captioned now, not stored; --add stores it)" in r.stdout
    assert "red.jpg" in r.stdout and "red2.png" in r.stdout
    assert json.loads(mllmret("stats", "--json", "--db", cli_library).stdout)["images"] == count
    r = mllmret("search", "--like", new, "--add", "--mode", "keyword", "--json", "--db", cli_library)
    first = json.loads(r.stdout.splitlines()[0])
    assert first["reference"]["source"] == "added"
    stats = json.loads(mllmret("stats", "--json", "--db", cli_library).stdout)
    assert stats["images"] == {"ok": count["ok"] + 1} and len(stats["runs"]) == len(before["runs"])
    again = mllmret("search", "--like", new, "--mode", "keyword", "--json", "--db", cli_library)
    assert json.loads(again.stdout.splitlines()[0])["reference"]["source"] == "library"


def test_cli_like_new_file_with_another_captioner(cli_library, tmp_path):
    new = tmp_path / "new.png"
    Image.new("RGB", (10, 10), "blue").save(new)
    r = mllmret("search", "--like", new, "--caption-backend", "fake", "--caption-model", "other",
                "--caption-prompt", "caption", "--mode", "keyword", "--json", "--db", cli_library)
    assert json.loads(r.stdout.splitlines()[0])["kept"] == ["blue", "size10x10", "tile"]
    r = mllmret("search", "--like", new, "--caption-backend", "nope", "--db", cli_library, ok=False)
    assert r.exit_code == 1 and "'nope' cannot caption" in r.stderr


def test_cli_like_in_hybrid_mode_with_a_tiny_embedder(cli_library, photos, tmp_path):
    from tiny_embedder import build_tiny_sentence_transformer

    tiny = build_tiny_sentence_transformer(tmp_path / "tiny-st")
    r = mllmret("search", "--like", photos / "red.jpg", "--embedder", tiny, "--min-similarity", "-1",
                "--json", "--db", cli_library)
    first, *hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(hits) == 4 and first["reference"]["image_id"] not in [h["image_id"] for h in hits]


@pytest.mark.parametrize("args, message", [
    (["--like", "999", "x"], "no image with id 999"),
    (["--like", "missing.jpg", "x"], "no such file"),
    (["--like", "{photos}/notes.txt"], "not an image file type"),
    (["--add", "cat"], "--add goes with --like"),
    (["--rewrite-with", "http://127.0.0.1:9/v1/m", "cat"], "--rewrite-with goes with --like"),
    (["--like", "1", "--rewrite-with", "http://127.0.0.1:9/api", "x"], "names no model"),
    (["--like", "1", "--rewrite-model", "m", "x"], "--rewrite-model goes with --rewrite-with"),
])
def test_cli_like_errors_are_one_line(cli_library, photos, args, message):
    args = [a.replace("{photos}", str(photos)) for a in args]
    r = mllmret("search", *args, "--mode", "keyword", "--db", cli_library, ok=False)
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1


def test_cli_help_explains_like_and_prompts_keep_rewrite_apart(tmp_path):
    text = " ".join(mllmret("search", "--help").stdout.split())
    assert "--like REF" in text and "image id" in text and "--add" in text and "--rewrite-with" in text
    listing = mllmret("prompts").stdout.splitlines()
    assert listing[0].startswith("caption: ") and listing[-1].startswith("rewrite (rewrite prompt for")
    r = mllmret("caption", tmp_path, "--prompt", "rewrite", "--db", tmp_path / "x.db", ok=False)
    assert r.exit_code == 1 and "'rewrite' is a rewrite prompt, not a caption prompt" in r.stderr


def test_like_with_the_tiny_llava_uses_the_latest_runs_model(tiny_llava, tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (48, 48), colour).save(folder / f"{i}.png")
    db = tmp_path / "llava.db"
    mllmret("caption", folder, "--model", tiny_llava, "--grid", "none", "--max-new-tokens", "8", "-q",
            "--no-metadata", "--db", db)
    new = tmp_path / "new.png"
    Image.new("RGB", (48, 48), "yellow").save(new)
    with Store(db) as store:
        r = resolve_reference(store, new)
        assert r.source == "captioned" and r.image_id is None and r.text
        assert os.path.samefile(r.path, new)
        r = resolve_reference(store, new, add=True, grid="none")
        runs = store.stats()["runs"]
    assert r.source == "added" and len(runs) == 1 and runs[0]["images"] == 4  # same model, prompt, settings
