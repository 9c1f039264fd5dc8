"""Retrieval evaluation with class names as queries: datasets, text sources, scoring, metrics, reports."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "EvalConfig": "setup", "run_eval": "runner", "EvalReport": "runner", "average_precision": "metrics",
    "pr_curve": "metrics", "load_coco": "datasets", "load_voc": "datasets", "format_table": "report",
    "write_json": "report", "update_markdown": "report",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
