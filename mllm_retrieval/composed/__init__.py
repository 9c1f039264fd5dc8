"""Composed image retrieval ("like this photo, but …"): edits, the --like search, learned composers,
benchmarks and their evaluation."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "LikeOptions": "like", "LikeResult": "like", "Reference": "like", "compose_like": "like",
    "resolve_reference": "like", "search_like": "like", "search_like_ref": "like", "compose": "edits",
    "load_composer": "composer", "Triplet": "composer", "train_composer": "training",
    "finetune_encoder": "training", "run_composed": "evaluate",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
