"""The local web page and its JSON API (FastAPI), over the same library calls as the CLI."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {"create_app": "app"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
