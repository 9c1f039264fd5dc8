"""Keyword and semantic search over photos described by a multimodal LLM (BM25 + sentence embeddings)."""

from .embedding import Embedder
from .errors import MllmretError
from .jsonl import export_jsonl, import_jsonl
from .parsing import Parsed, parse_output
from .pipeline import Summary, caption_paths
from .prompts import Prompt, load_prompt
from .search import Result, Searcher, search
from .store import Store
from .tiling import Box, grid_boxes

__all__ = [
    "Box", "Embedder", "MllmretError", "Parsed", "Prompt", "Result", "Searcher", "Store", "Summary",
    "caption_paths", "export_jsonl", "grid_boxes", "import_jsonl", "load_prompt",
    "parse_output", "search",
]
__version__ = "0.1.0"
