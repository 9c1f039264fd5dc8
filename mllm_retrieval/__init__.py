"""Keyword and semantic search over photos described by a multimodal LLM (BM25 + sentence embeddings).

The data path, one package per stage: `capture` (images, tiles, prompts, captioners, the caption pipeline)
writes text into the `library` (SQLite store, import/export, thumbnails); `search` builds documents and
indexes from it and ranks; `evaluation` and `composed` measure and extend search; `metadata` writes tags to
photo files; `web` and `cli` are thin layers over all of it.
"""

from __future__ import annotations

from .lazy import lazy_exports

_EXPORTS = {
    "Box": "capture.tiling", "Embedder": "search.embedding", "MllmretError": "errors",
    "Parsed": "capture.parsing", "Prompt": "capture.prompts", "Result": "search.searcher",
    "Searcher": "search.searcher", "Store": "library.store", "Summary": "capture.pipeline",
    "caption_paths": "capture.pipeline", "export_jsonl": "library.jsonl", "grid_boxes": "capture.tiling",
    "import_jsonl": "library.jsonl", "load_prompt": "capture.prompts", "parse_output": "capture.parsing",
}  # the one-shot search() is mllm_retrieval.search.search
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
