"""The library: one SQLite file of images, tiles and their text (store, migrations), its import and export
(JSON Lines), thumbnails, embedding at ingest and the bundled sample."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "Store": "store", "ImportSummary": "jsonl", "import_jsonl": "jsonl", "export_jsonl": "jsonl",
    "EmbedSummary": "embed", "embed_library": "embed", "thumbnail": "thumbnails",
    "image_detail": "details", "library_summary": "details", "load_sample": "sample",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
