"""Command-line habits: -word without quoting, image ids, similarity in semantic mode, tiles in words,
and queries made only of ignored words."""

from __future__ import annotations

import json

import pytest
from cli_helpers import mllmret

from mllm_retrieval.capture.tiling import Box, grid_boxes, tile_name
from mllm_retrieval.search.query import why_empty
from mllm_retrieval.search.query_args import split_query_args


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("habits") / "demo.db"
    mllmret("demo", "--db", db, "--mode", "keyword")
    return db


class Opt:
    def __init__(self, *opts: str, is_flag: bool = False) -> None:
        self.opts, self.secondary_opts, self.is_flag, self.count = list(opts), [], is_flag, False


PARAMS = [Opt("-k", "--limit"), Opt("--json", is_flag=True), Opt("--min-similarity"), Opt("--db")]


@pytest.mark.parametrize("args,expected", [
    (["dog", "-cat"], ["--", "dog", "-cat"]),
    (["-dog", "cat", "-k", "2"], ["-k", "2", "--", "-dog", "cat"]),
    (["cat", "-k2", "-kitten"], ["-k2", "--", "cat", "-kitten"]),
    (["cat", "--min-similarity", "-1", "-zebra", "--json"], ["--min-similarity", "-1", "--json", "--", "cat",
                                                             "-zebra"]),
    (["--limit=3", "a", "--", "-k", "5"], ["--limit=3", "--", "a", "-k", "5"]),
    (["--db", "-odd.db", "x"], ["--db", "-odd.db", "--", "x"]),
    (["--json"], ["--json"]),
])
def test_query_words_starting_with_a_dash_are_words(args, expected):
    assert split_query_args(args, PARAMS) == expected


def test_search_dog_minus_cat_needs_no_quotes(demo_db):
    with_dash = mllmret("search", "cat", "-kitten", "--mode", "keyword", "--json", "--db", demo_db)
    quoted = mllmret("search", "cat -kitten", "--mode", "keyword", "--json", "--db", demo_db)
    assert with_dash.stdout == quoted.stdout
    plain = mllmret("search", "cat", "--mode", "keyword", "--json", "--db", demo_db).stdout
    assert with_dash.stdout != plain  # the exclusion did something
    r = mllmret("search", "-cat", "--db", demo_db, ok=False)
    assert r.exit_code == 1 and "'-cat' only excludes images" in r.stderr


def test_table_shows_image_id_and_tiles_in_words(demo_db):
    args = ("search", "space", "shuttle", "-k", "1", "--mode", "keyword", "--db", demo_db)
    row = mllmret(*args).stdout
    [hit] = [json.loads(line) for line in mllmret(*args, "--json").stdout.splitlines()]
    assert f"#{hit['image_id']} " in row and row.rstrip().endswith("top right")
    assert hit["box"] == [256, 0, 512, 256] and hit["tile_name"] == "top right"


def test_semantic_mode_shows_the_similarity_as_score(demo_db):
    from mllm_retrieval.cli.search import format_result
    from mllm_retrieval.search.searcher import Result

    r = Result(rank=1, image_id=7, score=0.0164, path="/x.jpg", matched=(), tile_key=None, tile=None,
               via="meaning", similarity=0.4321)
    assert format_result(r, via=True, mode="semantic").split()[2] == "0.4321"
    assert format_result(r, via=True, mode="hybrid").split()[2] == "0.0164"


def test_tile_names():
    boxes = grid_boxes(300, 300, "3x3")
    names = [tile_name(b, 300, 300) for b in boxes]
    assert names == ["full", "top left", "top", "top right", "left", "centre", "right", "bottom left",
                     "bottom", "bottom right"]
    assert [tile_name(b, 400, 200) for b in grid_boxes(400, 200, "2x2", 0.2)[1:]] == [
        "top left", "top right", "bottom left", "bottom right"]
    assert tile_name(Box(0, 0, 5, 5), None, None) is None


@pytest.mark.parametrize("text,says", [
    ("photo", "'photo' is ignored: too common in captions"),
    ("a photo of the", "'a', 'photo', 'of', 'the' are ignored"),
    ("!!!", "'!!!' has no letters or digits"),
    ("-cat -dog", "'-cat', '-dog' only exclude images"),
])
def test_queries_of_ignored_words_say_which_and_why(text, says):
    assert says in why_empty(text)


def test_cli_says_which_words_were_ignored(demo_db):
    r = mllmret("search", "photo", "--db", demo_db, ok=False)
    assert r.exit_code == 1 and "Error: nothing to search for: 'photo' is ignored" in r.stderr


def test_web_api_says_which_words_were_ignored_and_what_the_cut_hid(demo_db, tmp_path):
    from fastapi.testclient import TestClient

    from mllm_retrieval.web.app import create_app

    with TestClient(create_app(demo_db), base_url="http://127.0.0.1") as c:
        page = c.get("/api/search", params={"q": "photo"}).json()
        assert page["empty"] == "no_words" and "'photo' is ignored" in page["message"]
        cut = c.get("/api/search", params={"q": "cat"}).json()
        more = c.get("/api/search", params={"q": "cat", "more_meaning": "true"}).json()
        assert cut["hidden"] > 0 and cut["notice"] is None and more["hidden"] == 0
        assert len(more["results"]) == len(cut["results"]) + cut["hidden"]
