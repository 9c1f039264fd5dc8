"""Photo metadata: the library's tags written where photo managers read them (XMP sidecars)."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {"SidecarSummary": "sidecars", "write_sidecars": "sidecars", "sidecar_path": "sidecars"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
