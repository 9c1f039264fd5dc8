"""`mllmret serve`: a local web page and a small JSON API over the same Store and Searcher as the CLI.

The routes are here; what they compute runs on worker threads (library.py: `Library`: searches on one,
image lookups on another, each with its own SQLite connection); response models are in schemas.py;
thumbnails are made on the server's thread pool and cached in the data dir.
Images are served only by their id in the database, from a file that was indexed and is unchanged.
Search runs in any of the CLI's modes (keyword, semantic, hybrid); the server's default is `serve --mode`.
With `like=ID`, a search is composed ("more like this, but …", `composed.like`): the image of the library
with that id is the reference and `q` the modification; only images already in the library can be one.
"""

from __future__ import annotations

import errno
import socket
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import config
from ..errors import ImageError, MllmretError
from ..library.details import library_summary
from ..library.embed import embed_in_background
from ..library.store import Store
from ..library.thumbnails import PREVIEW_SIZE, THUMB_SIZE, browser_type, is_sha256, thumbnail
from ..search.embedding import EmbedderError
from ..search.searcher import DEFAULT_MODE, check_mode
from .hosts import LoopbackHostMiddleware
from .library import MAX_RESULTS, Library, detail, file_of, search_page
from .schemas import Mode, SearchPage

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",  # other sites' pages cannot embed the photos
}
IMAGE_CACHE = "private, max-age=86400"  # an image id keeps its sha256 for good


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
        return await lib.read(summary)

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
        return await lib.run(search_page, q, k, offset, mode or lib.mode, _like_id(like), more_meaning)

    @app.get("/api/images/{image_id}")
    async def image(image_id: str) -> dict[str, Any]:
        """One image: every tile with its box, and each tile's tags, caption and raw text per run."""
        found = await lib.read(detail, _image_id(image_id))
        if found is None:
            raise HTTPException(404, "no such image in this database")
        return found

    async def _send(request: Request, image_id: str, size: int | None) -> Response:
        path, sha = await lib.read(file_of, _image_id(image_id))
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
