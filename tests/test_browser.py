"""The web page in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Locally these tests skip when Chromium or Playwright is missing; in CI (CI=true) they fail instead.
Each step saves a screenshot under $MLLMRET_ARTIFACTS (default: artifacts/) in browser/.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from web_fixtures import IMG_TAG, SCRIPT_TAG, build_library

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("MLLMRET_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium with apt)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A fresh Chromium profile per test module."""
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import uvicorn  # noqa: F401
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        _unavailable(f"{e.name} is not installed (pip install -e '.[web,dev]')")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=str(CHROMIUM), args=FLAGS,
            headless=True, viewport={"width": 1280, "height": 860}, service_workers="block",
        )
        yield context
        context.close()


class Server:
    """`create_app(db)` under uvicorn on 127.0.0.1, a free port, in a thread; keyword search by default
    (the steps that check BM25 ranks), unless a test names another mode and an embedder."""

    def __init__(self, db: Path, mode: str = "keyword", embedder: str | None = None) -> None:
        import uvicorn

        from mllm_retrieval.web.app import create_app

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(db, mode=mode, embedder=embedder)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def page(browser):
    """A tab that records dialogs and JavaScript errors; both must stay empty."""
    tab = browser.new_page()
    tab.events = {"dialogs": [], "errors": []}
    tab.on("dialog", lambda d: (tab.events["dialogs"].append(d.message), d.dismiss()))
    tab.on("pageerror", lambda e: tab.events["errors"].append(str(e)))
    tab.on("console", lambda m: m.type == "error" and tab.events["errors"].append(m.text))
    yield tab
    tab.close()
    assert tab.events == {"dialogs": [], "errors": []}


def shot(page, name: str) -> None:
    folder = ARTIFACTS / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("() => [...document.images].every((im) => im.complete)")
    page.screenshot(path=folder / f"{name}.png", full_page=True)


def card(page, name: str):
    return page.locator(".card", has=page.locator(".name", has_text=name))


def chip(scope, word: str, exclude: bool = False):
    label = scope.page.locator(".add", has_text=re.compile(f"^{re.escape(word)}$"))
    chips = scope.locator(".chip", has=label)
    return chips.first.locator(".exclude" if exclude else ".add")


def cards(page, n: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('.card').length === {n}")


def names(page) -> list[str]:
    return page.locator(".card .name").all_inner_texts()


def test_search_refine_with_chips_and_open_an_image(page, tmp_path):
    db, _ = build_library(tmp_path)
    with Server(db) as server:
        page.goto(server.url)
        page.wait_for_selector("#status:has-text('photos')")
        shot(page, "01-home")

        page.fill("#q", "tile")
        page.press("#q", "Enter")
        page.wait_for_selector(".card img")
        assert sorted(names(page)) == ["blue.jpg", "green.png", "red.png", "split.png"]
        assert page.url.endswith("/?q=tile")
        shot(page, "02-results")  # waits for every image to load
        assert page.locator(".card img").evaluate_all("ims => ims.every(im => im.naturalWidth > 0)")

        chip(card(page, "split.png"), "green").click()  # ranks images with green tiles first
        first_matched = "document.querySelector('.card .matched')?.textContent"
        page.wait_for_function(f"() => {first_matched}.includes('green')")
        assert page.input_value("#q") == "tile green" and page.url.endswith("/?q=tile+green")
        assert sorted(names(page)[:2]) == ["green.png", "split.png"] and len(names(page)) == 4
        split = card(page, "split.png")
        assert split.locator(".box.best").count() == 1  # its best tile (a green one) on the thumbnail
        assert "in" in chip(split, "green").locator("..").get_attribute("class").split()
        shot(page, "03-refined")

        chip(split, "red", exclude=True).click()  # -red drops every image with a red tile
        cards(page, 2)
        assert page.input_value("#q") == "tile green -red"
        assert names(page) == ["green.png", "blue.jpg"]
        shot(page, "04-excluded")

        page.go_back()
        cards(page, 4)
        assert page.input_value("#q") == "tile green"

        card(page, "green.png").locator(".thumb").click()
        page.wait_for_selector("#view .tile")
        assert "image=" in page.url and page.locator("#results").is_hidden()
        assert page.locator("#view .tile").count() == 5 and page.locator("#view .box.part").count() == 4
        page.wait_for_function("() => document.querySelector('#view .frame img').naturalWidth === 48")
        assert page.locator("#view details pre").first.text_content().startswith("Tags: green")
        shot(page, "05-image")

        page.keyboard.press("Escape")
        page.wait_for_selector("#view", state="hidden")
        assert page.input_value("#q") == "tile green" and len(names(page)) == 4


def test_switching_the_search_mode(page, tmp_path):
    from tiny_embedder import build_tiny_sentence_transformer

    db, _ = build_library(tmp_path)
    model = build_tiny_sentence_transformer(tmp_path / "tiny-st")  # random: every text is "similar"
    with Server(db, mode="hybrid", embedder=str(model)) as server:
        page.goto(f"{server.url}/?q=red")
        cards(page, 5)  # red.png and split.png hold the word; the others come by meaning only
        assert page.input_value("#mode") == "hybrid"
        assert names(page)[0] in ("red.png", "split.png") and {"red.png", "split.png"} <= set(names(page))
        assert card(page, "red.png").locator(".matched").inner_text().startswith("matched red · tile")
        assert re.fullmatch(r"by meaning 0\.\d\d", card(page, "green.png").locator(".matched").inner_text())
        shot(page, "08-mode-hybrid")

        page.select_option("#mode", "keyword")
        cards(page, 2)
        assert page.url.endswith("/?q=red&mode=keyword") and sorted(names(page)) == ["red.png", "split.png"]
        assert "mode=keyword" in card(page, "red.png").locator(".thumb").get_attribute("href")
        chip(card(page, "split.png"), "green").click()  # refining keeps the mode
        cards(page, 3)
        assert page.url.endswith("/?q=red+green&mode=keyword")
        assert page.locator(".by-meaning").count() == 0
        shot(page, "09-mode-keyword")

        page.select_option("#mode", "semantic")
        cards(page, 5)
        assert page.url.endswith("/?q=red+green&mode=semantic")
        assert page.locator(".by-meaning").count() == 2  # blue.jpg and the external image
        shot(page, "10-mode-meaning")

        page.go_back()
        cards(page, 3)
        assert page.input_value("#mode") == "keyword" and page.url.endswith("&mode=keyword")
        page.select_option("#mode", "hybrid")  # the server's default: left out of the URL
        cards(page, 5)
        assert page.url.endswith("/?q=red+green") and page.input_value("#q") == "red green"


def test_captions_and_queries_are_shown_as_text(page, tmp_path):
    db, _ = build_library(tmp_path)
    with Server(db) as server:
        page.goto(server.url)
        page.fill("#q", f"{SCRIPT_TAG} evil")
        page.press("#q", "Enter")
        page.wait_for_selector(".card")
        assert page.input_value("#q") == f"{SCRIPT_TAG} evil"
        assert SCRIPT_TAG in page.locator("#status").inner_text()
        assert SCRIPT_TAG in card(page, "blue.jpg").locator(".chips").inner_text()
        shot(page, "06-hostile-query")

        card(page, "blue.jpg").locator(".thumb").click()
        page.wait_for_selector("#view .tile")
        view = page.locator("#view")
        assert IMG_TAG in view.locator(".text").all_inner_texts()[1]
        page.locator("#view details").nth(1).locator("summary").click()
        assert SCRIPT_TAG in view.locator("details pre").nth(1).inner_text()
        assert page.evaluate("document.querySelectorAll('script:not([src]), img[src=\"x\"]').length") == 0
        shot(page, "07-hostile-captions")


def test_more_like_this_but_from_a_card_and_from_the_image_view(page, tmp_path):
    db, _ = build_library(tmp_path)
    with Server(db) as server:
        page.goto(f"{server.url}/?q=tile")
        cards(page, 4)
        split = card(page, "split.png")
        split_id = split.get_attribute("data-image-id")
        button = split.get_by_role("button", name="More like this, but…")
        button.click()
        field = split.get_by_role("textbox", name="How the photos should differ from split.png")
        assert field.evaluate("el => el === document.activeElement")
        assert field.get_attribute("placeholder") == "without people, at sunset"
        assert button.get_attribute("aria-expanded") == "true"
        field.press("Escape")  # closes the input, keeps the results
        assert field.is_hidden() and button.get_attribute("aria-expanded") == "false"
        assert button.evaluate("el => el === document.activeElement") and page.url.endswith("/?q=tile")

        button.click()
        field.fill("without red")
        shot(page, "11-like-input")
        field.press("Enter")
        page.wait_for_selector("#like .composition")
        cards(page, 2)
        assert sorted(names(page)) == ["blue.jpg", "green.png"]  # not the reference, nothing holding red
        assert page.url.endswith(f"/?q=tile&like={split_id}&but=without+red")
        strip = page.locator("#like")
        assert "More like split.png, but" in strip.inner_text()
        assert strip.locator("q").inner_text() == "without red"
        assert strip.locator(".word.kept").all_inner_texts() == ["size64x64", "tile"]
        assert strip.locator(".word.dropped").all_inner_texts() == ["red"]
        assert strip.locator(".word.excluded").all_inner_texts() == ["red"]
        assert strip.locator(".like-thumb img").evaluate("im => im.complete && im.naturalWidth > 0")
        assert page.locator("#status").inner_text().startswith("2 images like split.png, but “without red”")
        assert page.input_value("#q") == "tile"
        shot(page, "12-like-results")

        page.reload()  # the URL holds it all
        cards(page, 2)
        assert strip.locator(".word.excluded").all_inner_texts() == ["red"]
        page.go_back()
        cards(page, 4)
        assert strip.is_hidden() and page.url.endswith("/?q=tile")
        page.go_forward()
        cards(page, 2)
        chip(card(page, "green.png"), "green").click()  # a chip adds its word to the modification
        page.wait_for_function("() => location.search.endsWith('but=without+red%3B+green')")
        page.wait_for_selector("#like .word.added")
        assert strip.locator(".word.added").all_inner_texts() == ["green"] and names(page)[0] == "green.png"
        assert "in" in chip(card(page, "green.png"), "green").locator("..").get_attribute("class").split()
        page.go_back()
        cards(page, 2)
        strip.get_by_role("button", name="Clear").click()
        cards(page, 4)
        assert strip.is_hidden() and page.url.endswith("/?q=tile")

        green_id = card(page, "green.png").get_attribute("data-image-id")
        card(page, "green.png").locator(".thumb").click()  # the image view has the button too
        page.wait_for_selector("#view .tile")
        page.locator("#view").get_by_role("button", name="More like this, but…").click()
        page.locator("#view").get_by_role("textbox").fill(IMG_TAG)
        shot(page, "13-like-in-the-image-view")
        page.locator("#view").get_by_role("button", name="Search", exact=True).click()
        page.wait_for_selector("#like .composition")
        assert page.locator("#view").is_hidden() and "green.png" not in names(page)
        assert page.url.endswith(f"like={green_id}&but=%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E")
        assert strip.locator("q").inner_text() == IMG_TAG  # the modification is text, never HTML
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert "src" in strip.locator(".word.added").all_inner_texts()
        shot(page, "14-like-from-the-image")


def test_empty_state_names_the_command_to_run(page, tmp_path):
    with Server(tmp_path / "none.db") as server:
        page.goto(f"{server.url}/?q=cat")
        page.wait_for_selector("#empty h2")
        assert "mllmret caption ~/Pictures --db" in page.locator("#empty pre").inner_text()
        shot(page, "00-empty")


def test_more_results_load_on_scroll(page, tmp_path):
    from fakes import FakeCaptioner
    from PIL import Image

    from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
    from mllm_retrieval.capture.prompts import load_prompt
    from mllm_retrieval.library.store import Store

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        Image.new("RGB", (40, 30), (200, 4 * i, 30)).save(folder / f"{i:02}.png")
    with Store(tmp_path / "many.db") as store:
        caption_paths(store, [folder], FakeCaptioner(), load_prompt(), CaptionSettings(grid="none"),
                      progress=False)
    with Server(tmp_path / "many.db") as server:
        page.goto(f"{server.url}/?q=red")
        cards(page, 24)
        assert page.locator("#status").inner_text().startswith("24+ images")
        page.locator("#more").scroll_into_view_if_needed()
        cards(page, 30)
        assert page.locator("#status").inner_text().startswith("30 images")
        assert page.locator("#more").is_hidden()
        assert page.locator(".card .rank").all_inner_texts()[-1] == "#30"
        page.wait_for_load_state("networkidle")  # the scrolled-in cards' thumbnails, before the server stops


def test_text_read_in_a_photo_is_listed_and_its_boxes_drawn(page, tmp_path):
    from fakes import FakeOcr

    from mllm_retrieval.capture.ocr_pipeline import ocr_paths
    from mllm_retrieval.library.store import Store

    db, photos = build_library(tmp_path)
    with Store(db) as store:
        ocr_paths(store, [photos], FakeOcr(), progress=False)
    with Server(db) as server:
        page.goto(f"{server.url}/?q=redshop")
        page.wait_for_selector(".card img")
        assert "text in photo" in card(page, "red.png").locator(".matched").text_content()
        card(page, "red.png").locator(".thumb").click()
        page.wait_for_selector("#view .ocr-lines li")
        assert page.locator("#view .ocr-lines li").all_inner_texts() == [
            "REDSHOP open daily (0.97)", "zebra (0.30)"]
        assert page.locator("#view .ocr-lines li.unsure").all_inner_texts() == ["zebra (0.30)"]
        assert page.locator("#view .box.ocr").count() == 2  # both lines share the fake's box
        assert page.locator("#view .box.ocr.found").count() == 1  # only the searchable line holds the word
        shot(page, "ocr-image")


def test_related_words_from_feedback_refine_the_query(page, tmp_path):
    import json

    from test_feedback import BIRD, FILLER, PIGEONS, Words

    from mllm_retrieval.library.jsonl import import_jsonl
    from mllm_retrieval.library.store import Store
    from mllm_retrieval.search.searcher import Searcher

    texts = PIGEONS + [BIRD] + [FILLER[i % len(FILLER)] for i in range(70)]
    lines = tmp_path / "pigeons.jsonl"  # images known by id only (no files: no thumbnails to fetch)
    lines.write_text("".join(json.dumps({"image_id": f"img{n}", "model": "m", "text": f"Caption: {t}"}) + "\n"
                             for n, t in enumerate(texts)))
    db = tmp_path / "pigeons.db"
    with Store(db) as store:
        import_jsonl(store, lines, progress=False)
        Searcher(store, mode="hybrid", embedder=Words()).search("pigeon")  # embeds the library
    with Server(db, mode="hybrid", embedder=Words()) as server:
        page.goto(f"{server.url}/?q=pigeon")
        page.wait_for_selector("#related:not([hidden]) .chip")
        related = page.locator("#related")
        assert related.locator(".label").inner_text() == "Related:"
        shot(page, "15-related-words")
        related.locator(".add", has_text=re.compile("^bridge$")).click()
        page.wait_for_function("() => new URL(location).searchParams.get('q') === 'pigeon bridge'")
        assert page.input_value("#q") == "pigeon bridge"
