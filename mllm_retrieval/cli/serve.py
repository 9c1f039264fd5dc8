"""`mllmret serve`: the local web page."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import config
from .main import (
    DbOption,
    SearchMode,
    app,
    fail,
)


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(
        help="Address to bind. Anything but 127.0.0.1/localhost lets other machines see your photos.")
    ] = "127.0.0.1",
    mode: Annotated[SearchMode, typer.Option(
        envvar="MLLMRET_SEARCH_MODE", help="The page's search mode until you pick another (keyword, "
        "semantic or hybrid, as for `mllmret search`); the first search by meaning loads the embedder.")
    ] = SearchMode.hybrid,
    embedder: Annotated[str | None, typer.Option(
        envvar="MLLMRET_EMBEDDER", help="sentence-transformers model folder or id for semantic/hybrid "
        "[default: the packaged all-MiniLM-L6-v2].")] = None,
    db: DbOption = None,
) -> None:
    """Search and refine in a local web page (and a JSON API under /api); needs the `web` extra."""
    try:
        import uvicorn

        from ..web.app import create_app, preflight
        from ..web.hosts import is_loopback
    except ImportError as e:
        raise fail(f"the web page needs FastAPI and uvicorn ({e.name} is missing): "
                    "pip install 'mllm-retrieval[web]'") from None
    from ..search.embedding import resolve_model

    path = (db or config.db_path()).absolute()
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1] as in a URL
    url_host = f"[{host}]" if ":" in host else host
    preflight(path, host, port)
    if embedder is not None or mode is not SearchMode.keyword:
        resolve_model(embedder)  # a file, or no packaged model: say so now (a model loads on first use)
    local = is_loopback(host)
    if not local:
        typer.echo(f"Warning: listening on {host}: anyone who can reach this machine can search and "
                   "view your photos (there is no login).", err=True)
    state = "" if path.exists() else " (no database yet: the page says how to make one)"
    typer.echo(f"Serving {path}{state}; {mode.value} search by default\nOpen http://{url_host}:{port}/ in a "
               "browser; Ctrl-C stops.", err=True)
    app_ = create_app(path, allowed_hosts=None if local else ["*"], mode=mode.value,
                      embedder=embedder, embed_missing=True)
    uvicorn.run(app_, host=host, port=port, log_level="warning")
