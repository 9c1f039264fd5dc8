"""Keyword and semantic search over photos described by a multimodal LLM (BM25 + sentence embeddings)."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Box": "tiling", "Embedder": "embedding", "MllmretError": "errors", "Parsed": "parsing",
    "Prompt": "prompts", "Result": "search", "Searcher": "search", "Store": "store", "Summary": "pipeline",
    "caption_paths": "pipeline", "export_jsonl": "jsonl", "grid_boxes": "tiling", "import_jsonl": "jsonl",
    "load_prompt": "prompts", "parse_output": "parsing",
}  # the one-shot search() is mllm_retrieval.search.search: a lazy name would clash with its module
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    """The API, imported on first use: `mllmret search` only loads what a search needs (fast start)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
