"""Photo metadata: our tags written where photo managers read them (XMP sidecars), a person's read back."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {"SidecarSummary": "sidecars", "write_sidecars": "sidecars", "sidecar_path": "sidecars",
            "PhotoText": "read", "read_photo_text": "read", "read_metadata": "read"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
