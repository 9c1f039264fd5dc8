"""`mllmret serve`: a local web page and a small JSON API over the same Store and Searcher as the CLI.

SQLite connections stay on the thread that opened them, so every database call runs on one worker
thread (`Library`); thumbnails are made on the server's thread pool and cached in the data dir.
Images are served only by their id in the database, from a file that was indexed and is unchanged.
Search runs in any of the CLI's modes (keyword, semantic, hybrid); the server's default is `serve --mode`.
With `like=ID`, a search is composed ("more like this, but …", `composed.like`): the image of the library
with that id is the reference and `q` the modification; only images already in the library can be one.
"""

from __future__ import annotations

import asyncio
import errno
import shlex
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import config
from ..composed.like import Composition, Reference, compose_like, image_text, search_like
from ..errors import ImageError, MllmretError
from ..library.details import card_info, image_detail, indexed_file, library_summary
from ..library.embed import SEARCH_BACKLOG, embed_in_background
from ..library.store import Store, as_text
from ..library.thumbnails import PREVIEW_SIZE, THUMB_SIZE, browser_type, is_sha256, thumbnail
from ..search.cutoff import MIN_RELATIVE, MIN_SIMILARITY
from ..search.embedding import EmbedderError
from ..search.query import parse_query, why_empty
from ..search.searcher import DEFAULT_MODE, Searcher, check_mode
from .hosts import LoopbackHostMiddleware

STATIC = Path(__file__).parent / "static"
MAX_RESULTS = 2000  # deepest a page of results can reach (offset + k)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",  # other sites' pages cannot embed the photos
}
IMAGE_CACHE = "private, max-age=86400"  # an image id keeps its sha256 for good
Mode = Literal["keyword", "semantic", "hybrid"]  # fusion.MODES


class SearchResult(BaseModel):
    """One ranked image (the search result's fields, plus what the page shows)."""

    model_config = ConfigDict(extra="allow")
    rank: int
    image_id: int
    score: float
    path: str | None
    external_id: str | None
    matched: list[str]
    tile: str | None
    box: list[int] | None
    width: int | None
    height: int | None
    tags: list[str]
    thumbnail: str | None
    url: str
    via: str  # keyword | meaning | both
    bm25: float | None
    similarity: float | None


class LikeInfo(BaseModel):
    """The reference of a composed search and what became of its words (`modification` is `q`)."""

    image_id: int
    path: str | None
    external_id: str | None
    width: int | None
    height: int | None
    thumbnail: str | None
    url: str
    modification: str
    kept: list[str]  # reference words searched for (at half weight)
    dropped: list[str]  # reference words the modification removes
    added: list[str]  # words of the modification that are not the reference's
    excluded: list[str]  # words no result may hold (as -word)
    composed: str  # the text semantic ranking embeds


class SearchPage(BaseModel):
    """A page of results; `empty` names why there are none (no_database, no_captions, no_words)."""

    query: str
    mode: str
    default_mode: str
    k: int
    offset: int
    results: list[SearchResult]
    has_more: bool
    empty: str | None = None
    message: str | None = None
    hint: str | None = None
    like: LikeInfo | None = None  # a composed search's reference and words
    notice: str | None = None  # set when a search by meaning was answered by keyword (embeddings missing)
    hidden: int = 0  # meaning-only results below the cut-off, left out (more_meaning=true shows them)
    more_meaning: bool = False  # the request asked for them too


class Library:
    """The database, used from one worker thread; opened once it exists. One Searcher answers every mode
    (the mode is per query), so the BM25 index and the embedding model load once, not once per mode."""

    def __init__(self, path: Path, mode: str = DEFAULT_MODE, embedder=None) -> None:
        self.path = path
        self.mode, self.embedder = mode, embedder
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mllmret-db")
        self.store: Store | None = None
        self.searcher = None

    async def run(self, fn, *args) -> Any:
        """fn(self, *args) on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, self, *args))

    def open(self) -> Store | None:
        if self.store is None and self.path.exists():
            self.store = Store(self.path)
        return self.store

    def close(self) -> None:
        def _close(lib: Library) -> None:
            if lib.store is not None:
                lib.store.close()
        self.pool.submit(_close, self).result()
        self.pool.shutdown()

    def hint(self) -> str:
        db = "" if self.path == config.db_path() else f" --db {shlex.quote(str(self.path))}"
        return f"mllmret caption ~/Pictures{db}"


def _search(lib: Library, q: str, k: int, offset: int, mode: str, like: int | None = None,
            more_meaning: bool = False) -> dict[str, Any]:
    page: dict[str, Any] = {"query": q, "mode": mode, "default_mode": lib.mode, "k": k, "offset": offset,
                            "results": [], "has_more": False, "more_meaning": more_meaning}
    store = lib.open()
    if store is None or not store.has_captions():
        where = "no database yet" if store is None else "no captions yet"
        return {**page, "empty": "no_database" if store is None else "no_captions",
                "message": f"{where} at {lib.path}: describe your photos first", "hint": lib.hint()}
    if like is not None:
        return _search_like(lib, store, page, like)
    if parse_query(q).empty:
        return {**page, "empty": "no_words", "message": why_empty(q)}
    searcher = _searcher(lib, store, mode, more_meaning)
    results = searcher.search(q, min(offset + k + 1, MAX_RESULTS + 1), mode=mode)
    return _fill({**page, "notice": searcher.notice, "hidden": searcher.hidden}, store, results)


def _search_like(lib: Library, store: Store, page: dict[str, Any], image_id: int) -> dict[str, Any]:
    """The page for `like=image_id`: images like the reference, changed as `q` says; never the reference."""
    reference = _reference(store, image_id)
    modification, mode, k, offset = page["query"], page["mode"], page["k"], page["offset"]
    composition = compose_like(reference.text, modification)
    page["like"] = _like_info(store, image_id, modification, composition)
    if composition.query().empty:
        return {**page, "empty": "no_words", "message": "nothing left to search for: the modification "
                "removes every word of the reference and adds none"}
    searcher = _searcher(lib, store, mode, page["more_meaning"])
    found = search_like(searcher, reference, modification, min(offset + k + 1, MAX_RESULTS + 1), mode)
    return _fill({**page, "notice": searcher.notice, "hidden": searcher.hidden}, store, found.results)


def _reference(store: Store, image_id: int) -> Reference:
    """An image of the library as a reference; never a file path (the page has no uploads)."""
    row = store.db.execute("SELECT path, external_id FROM images WHERE id = ?", [image_id]).fetchone()
    if row is None:
        raise HTTPException(404, f"no such image in this database (like={image_id})")
    text = image_text(store, image_id)
    if not text:
        raise HTTPException(422, f"image {image_id} has no tags or captions to start from")
    return Reference(image_id, as_text(row[0]) or as_text(row[1]), text, "library")


def _like_info(store: Store, image_id: int, modification: str, c: Composition) -> dict[str, Any]:
    """The `like` object: the reference (as a card shows it) and the composition's words."""
    row = store.image_row(image_id)
    extra = card_info(store, [image_id]).get(image_id, {})
    return {"image_id": image_id, "path": row["path"], "external_id": row["external_id"],
            "width": row["width"], "height": row["height"],
            "thumbnail": f"/api/images/{image_id}/thumbnail" if extra.get("has_file") else None,
            "url": f"/api/images/{image_id}", "modification": modification, **c.words(),
            "composed": c.text}


def _searcher(lib: Library, store: Store, mode: str, more_meaning: bool = False) -> Searcher:
    """The library's one Searcher, made on first use, with the meaning cut-off of this request; the
    embedder loaded when `mode` needs it."""
    if lib.searcher is None:
        lib.searcher = Searcher(store, None, mode=lib.mode, embedder=lib.embedder, max_backlog=SEARCH_BACKLOG)
    cut = (None, None) if more_meaning else (MIN_SIMILARITY, MIN_RELATIVE)
    lib.searcher.min_similarity, lib.searcher.min_relative = cut
    if mode != "keyword":
        _load_embedder(lib.searcher)
    return lib.searcher


def _fill(page: dict[str, Any], store: Store, results: list) -> dict[str, Any]:
    """The page's slice of `results` (offset, k) as cards, and whether there are more."""
    k, offset = page["k"], page["offset"]
    shown = results[offset:offset + k]
    info = card_info(store, [r.image_id for r in shown])
    for r in shown:
        extra = info.get(r.image_id, {"width": None, "height": None, "has_file": False, "tags": []})
        page["results"].append({
            **r.to_dict(), "width": extra["width"], "height": extra["height"], "tags": extra["tags"],
            "thumbnail": f"/api/images/{r.image_id}/thumbnail" if extra["has_file"] else None,
            "url": f"/api/images/{r.image_id}",
        })
    page["has_more"] = len(results) > offset + k and offset + k < MAX_RESULTS
    return page


def _load_embedder(searcher) -> None:
    """Load the embedding model now, so that whatever goes wrong becomes one line (an EmbedderError); the
    numpy encoder when the model has one (no torch: the first answer comes in a second, not fifteen)."""
    try:
        embedder = searcher.semantic.embedder
        getattr(embedder, "light", None) or getattr(embedder, "model", None)
    except MllmretError:
        raise
    except Exception as e:  # a damaged model folder can fail in many ways
        first = (str(e).splitlines() or [""])[0][:300]
        raise EmbedderError(f"cannot load the embedder: {type(e).__name__}: {first}") from None


def _detail(lib: Library, image_id: int) -> dict[str, Any] | None:
    store = lib.open()
    detail = image_detail(store, image_id) if store else None
    if detail is not None:
        has_file = indexed_file(store, image_id) is not None
        detail["file"] = f"/api/images/{image_id}/file" if has_file else None
        detail["thumbnail"] = f"/api/images/{image_id}/thumbnail" if has_file else None
    return detail


def _file(lib: Library, image_id: int) -> tuple[Path | None, str | None]:
    store = lib.open()
    if store is None:
        return None, None
    row = store.db.execute("SELECT sha256 FROM images WHERE id = ?", [image_id]).fetchone()
    return (indexed_file(store, image_id), as_text(row[0]) or "") if row else (None, None)


def _image_id(text: str) -> int:
    """A database id from the URL; anything but a plain integer is simply not found."""
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise HTTPException(404, "no such image: ids are the integers that search returns")
    return int(text)


def _like_id(text: str | None) -> int | None:
    """The `like` parameter: an image id (as for /api/images/{id}), never a path or a file."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise HTTPException(400, "bad request (like: an image id, the integer image_id that search returns)")
    return int(text)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


class HeadAsGet:
    """ASGI middleware: HEAD is answered wherever GET is, with GET's status and headers and no body."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def create_app(db_path: str | Path | None = None, allowed_hosts: list[str] | None = None,
               mode: str = DEFAULT_MODE, embedder=None, embed_missing: bool = False) -> FastAPI:
    """The web app for one database (created by `mllmret caption` or `import`; may not exist yet).

    `mode` is the search mode when a request names none; `embedder` as for `search.Searcher`;
    `embed_missing` embeds the text that has no vector yet on a background thread at start-up."""
    lib = Library(Path(db_path) if db_path else config.db_path(), check_mode(mode), embedder)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if embed_missing:
            embed_in_background(lib.path, embedder)
        yield
        await run_in_threadpool(lib.close)

    app = FastAPI(title="mllmret", summary="Search photos by the words an M-LLM wrote about them.",
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan)
    app.state.library = lib
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    else:  # a local server: any loopback name or address, nothing else (DNS rebinding)
        app.add_middleware(LoopbackHostMiddleware)
    app.add_middleware(HeadAsGet)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
        return _error(400, f"bad request ({where})")

    @app.exception_handler(MllmretError)
    async def library_error(_request: Request, exc: MllmretError) -> JSONResponse:
        message = " ".join(str(exc).splitlines())
        if isinstance(exc, EmbedderError):
            message += "; keyword search still works (mode=keyword)"
        return _error(500, message)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/library")
    async def library() -> dict[str, Any]:
        """Counts of images, captions and runs; the command that adds photos; the default search mode."""
        def summary(lib: Library) -> dict[str, Any]:
            store = lib.open()
            counts = library_summary(store) if store else {"database": str(lib.path), "images": 0,
                                                             "captions": 0, "runs": 0}
            return {**counts, "exists": store is not None, "hint": lib.hint(), "mode": lib.mode}
        return await lib.run(summary)

    @app.get("/api/search", response_model=SearchPage)
    async def search(
        q: str = Query("", max_length=2000, description='Words; "a phrase", +must, -exclude.'),
        k: int = Query(24, ge=1, le=100, description="Results per page."),
        offset: int = Query(0, ge=0, le=MAX_RESULTS, description="Results to skip (pagination)."),
        mode: Annotated[Mode | None, Query(description="keyword (BM25), semantic (meaning) or hybrid (both, "
                                           "fused); default: the server's (`serve --mode`).")] = None,
        like: str | None = Query(None, max_length=40, description="An image id: images like it, changed as "
                                 "`q` says ('without people, at sunset'; empty `q`: more like it)."),
        more_meaning: bool = Query(False, description="Also the meaning-only results below the cut-off "
                                   "(`hidden` says how many the default leaves out)."),
    ) -> dict[str, Any]:
        """Rank images by their tags and captions; with `like`: images like that one, changed as `q` says."""
        return await lib.run(_search, q, k, offset, mode or lib.mode, _like_id(like), more_meaning)

    @app.get("/api/images/{image_id}")
    async def image(image_id: str) -> dict[str, Any]:
        """One image: every tile with its box, and each tile's tags, caption and raw text per run."""
        detail = await lib.run(_detail, _image_id(image_id))
        if detail is None:
            raise HTTPException(404, "no such image in this database")
        return detail

    async def _send(request: Request, image_id: str, size: int | None) -> Response:
        path, sha = await lib.run(_file, _image_id(image_id))
        if sha is None:
            return _error(404, "no such image in this database")
        if path is None:
            return _error(404, "no indexed file for this image: it was imported without one, or the file is "
                          "gone or changed since it was indexed (caption its folder again)")
        etag = f'"{sha}"' if is_sha256(sha) else None  # an odd stored hash: served, not cached
        headers = {"ETag": etag, "Cache-Control": IMAGE_CACHE} if etag else {"Cache-Control": "no-store"}
        if etag and request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        media = "image/jpeg" if size else await run_in_threadpool(browser_type, path)
        if media is None:  # TIFF and other formats browsers cannot show
            media, size = "image/jpeg", PREVIEW_SIZE
        try:
            if size is not None:
                path = await run_in_threadpool(thumbnail, path, sha, size)
        except ImageError as e:
            return _error(404, f"cannot show this image: {e}")
        return FileResponse(path, media_type=media, headers=headers)

    @app.get("/api/images/{image_id}/thumbnail", response_class=FileResponse)
    async def image_thumbnail(request: Request, image_id: str) -> Response:
        """A JPEG, longest side 320 pixels, made on first request and cached."""
        return await _send(request, image_id, THUMB_SIZE)

    @app.get("/api/images/{image_id}/file", response_class=FileResponse)
    async def image_file(request: Request, image_id: str) -> Response:
        """The indexed image file itself (a large JPEG for formats browsers cannot show)."""
        return await _send(request, image_id, None)

    return app


def preflight(db_path: Path, host: str, port: int) -> None:
    """Fail early, in one line, on a database that cannot be opened or a port that is taken."""
    if db_path.exists():
        Store(db_path).close()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise MllmretError(f"port {port} is in use: pass another one, e.g. --port {port + 1}") from e
            raise MllmretError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
