"""The search modes and hybrid fusions, defined once for the searcher, the CLI, the web API and evaluation
(no imports: the CLI reads them at start-up)."""

from __future__ import annotations

from enum import Enum


class SearchMode(str, Enum):
    """keyword ranks by BM25, semantic by the cosine of sentence embeddings, hybrid fuses both."""

    keyword = "keyword"
    semantic = "semantic"
    hybrid = "hybrid"


MODES = tuple(m.value for m in SearchMode)


class Fusion(str, Enum):
    """How hybrid fuses the two rankings (search/fusion.py): by normalised scores or by ranks."""

    combmnz = "combmnz"
    rrf = "rrf"


DEFAULT = Fusion.combmnz  # measured best with feedback (bench/fusion_compare.py, eval/RESULTS.md)
DEFAULT_FUSION = DEFAULT.value
