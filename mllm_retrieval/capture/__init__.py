"""Capture: walk and open images, cut tiles, prompt a captioner, parse its answer, store the text."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "Box": "tiling", "grid_boxes": "tiling", "crop": "tiling", "Prompt": "prompts", "load_prompt": "prompts",
    "Parsed": "parsing", "parse_output": "parsing", "Summary": "pipeline", "caption_paths": "pipeline",
    "Estimate": "estimate", "estimate": "estimate", "ocr_paths": "ocr_pipeline",
    "open_image": "images", "sha256_file": "images", "walk": "images",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
