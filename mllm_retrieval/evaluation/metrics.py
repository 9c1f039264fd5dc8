"""Ranked-retrieval metrics over fully scored evaluation sets, with deterministic handling of ties.

Every item of the evaluation set gets a score per query; items with no match get the lowest score
(0 or -inf). Items sharing a score form a tie block that enters the ranking as one step, so results
never depend on the order of the input. -inf items are one tie block ranked last: they still count
as retrieved, so recall always reaches 1.0 at the final point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

_trapezoid = np.trapezoid if hasattr(np, "trapezoid") else np.trapz  # np.trapz is gone in numpy >= 2.4

DEFAULT_RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True, eq=False)
class PRCurve:
    """One point per distinct score threshold, ordered by descending threshold (recall non-decreasing)."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class ClassResult:
    """Per-class (per-query) retrieval result; ap and pr_auc are NaN when n_relevant == 0."""

    name: str
    n_relevant: int
    ap: float
    pr_auc: float
    prevalence: float


class TieStats(NamedTuple):
    """Items that share their score with another item, and the size of the largest tie block."""

    n_tied_items: int
    largest_tie_block: int


def _one_d(values: ArrayLike, name: str) -> np.ndarray:
    """`values` as an array, if it is a non-empty 1-D one."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _check_scores(scores: ArrayLike) -> np.ndarray:
    """Validate scores: a non-empty 1-D real array, each value finite or -inf."""
    arr = _one_d(scores, "scores")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"scores must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(float)
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN; give unmatched items the lowest score (0 or -inf) instead")
    if np.isposinf(arr).any():
        raise ValueError("scores contain +inf; only finite values or -inf are allowed")
    return arr


def _check_relevant(relevant: ArrayLike) -> np.ndarray:
    """Validate relevance labels: a non-empty 1-D array of booleans or 0/1 values."""
    arr = _one_d(relevant, "relevant")
    if arr.dtype.kind == "b":
        return arr.copy()
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise ValueError("relevant must be boolean or contain only 0/1 values")
    return arr.astype(bool)


def _check(scores: ArrayLike, relevant: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (scores, relevant) pair of equal length."""
    s, r = _check_scores(scores), _check_relevant(relevant)
    if s.shape != r.shape:
        raise ValueError(f"scores and relevant differ in length: {s.size} != {r.size}")
    return s, r


def _readonly(a: np.ndarray) -> np.ndarray:
    """Mark an array read-only so frozen results stay frozen."""
    a.setflags(write=False)
    return a


def pr_curve(scores: ArrayLike, relevant: ArrayLike) -> PRCurve:
    """Precision/recall after each distinct threshold, highest first; recall is NaN if nothing is relevant.

    Like sklearn.metrics.precision_recall_curve(drop_intermediate=False) reversed, but without its
    artificial (recall 0, precision 1) end point and with -inf allowed as the last threshold.
    """
    s, r = _check(scores, relevant)
    order = np.argsort(-s, kind="stable")
    s, r = s[order], r[order]
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)  # last index of each tie block
    tp = np.cumsum(r)[ends]
    n_retrieved = ends + 1
    n_relevant = int(r.sum())
    recall = tp / n_relevant if n_relevant else np.full(tp.shape, np.nan)
    return PRCurve(
        precision=_readonly(tp / n_retrieved),
        recall=_readonly(np.asarray(recall, dtype=float)),
        thresholds=_readonly(s[ends]),
    )


def average_precision(scores: ArrayLike, relevant: ArrayLike) -> float:
    """Step-wise AP, sum_n (R_n - R_{n-1}) P_n as in sklearn; NaN when no item is relevant.

    A tie block is one threshold: each relevant item in it is credited with the block-end precision
    tp/(tp+fp). This is order-independent, but it is not the mean AP over random tie orderings, and a
    block of only relevant items after irrelevant ones scores above every ordering of it (see tests).
    Callers must skip NaN (no relevant items) queries explicitly and report them.
    """
    curve = pr_curve(scores, relevant)
    if np.isnan(curve.recall).any():
        return float("nan")
    return float(np.sum(np.diff(curve.recall, prepend=0.0) * curve.precision))


def pr_auc(scores: ArrayLike, relevant: ArrayLike) -> float:
    """Trapezoidal area under the PR curve (np.trapezoid); NaN when no item is relevant.

    Convention: the curve is anchored at recall 0 with the precision of its first point, i.e. the first
    point is extended flat to recall 0 (sklearn's curve puts precision 1 there instead). Linear
    interpolation between points can land above or below average_precision (Davis & Goadrich, 2006).
    """
    curve = pr_curve(scores, relevant)
    if np.isnan(curve.recall).any():
        return float("nan")
    recall = np.concatenate(([0.0], curve.recall))
    precision = np.concatenate((curve.precision[:1], curve.precision))
    return float(_trapezoid(precision, recall))


def interpolated_curve(
    scores: ArrayLike, relevant: ArrayLike, recall_levels: ArrayLike = DEFAULT_RECALL_LEVELS
) -> np.ndarray:
    """Interpolated precision max{P_n : R_n >= r} at each recall level r; all NaN if nothing is relevant."""
    levels = np.asarray(recall_levels, dtype=float)
    if levels.ndim != 1 or np.isnan(levels).any() or (levels < 0).any() or (levels > 1).any():
        raise ValueError("recall_levels must be a 1-D array of values in [0, 1]")
    curve = pr_curve(scores, relevant)
    if np.isnan(curve.recall).any():
        return np.full(levels.shape, np.nan)
    best_after = np.maximum.accumulate(curve.precision[::-1])[::-1]
    idx = np.searchsorted(curve.recall, levels, side="left")  # first point with recall >= level
    return best_after[np.minimum(idx, best_after.size - 1)]  # final recall is exactly 1.0


def random_baseline(relevant: ArrayLike) -> float:
    """Fraction of relevant items: the expected precision (≈ AP) of a random ranking."""
    return float(_check_relevant(relevant).mean())


def class_result(name: str, scores: ArrayLike, relevant: ArrayLike) -> ClassResult:
    """Evaluate one class (query) into a ClassResult."""
    s, r = _check(scores, relevant)
    return ClassResult(name, int(r.sum()), average_precision(s, r), pr_auc(s, r), random_baseline(r))


def summarize(results: Sequence[ClassResult]) -> dict:
    """Macro means of ap, pr_auc and prevalence over classes with relevant items, and what was skipped."""
    kept = [c for c in results if c.n_relevant > 0]
    skipped = [c.name for c in results if c.n_relevant <= 0]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "n_classes": len(results),
        "n_evaluated": len(kept),
        "n_skipped_no_relevant": len(skipped),
        "skipped": skipped,
        "macro_ap": mean([c.ap for c in kept]),
        "macro_pr_auc": mean([c.pr_auc for c in kept]),
        "macro_prevalence": mean([c.prevalence for c in kept]),
    }


def micro_ap(all_scores: list[np.ndarray], all_relevant: list[np.ndarray]) -> float:
    """AP over all (query, item) pairs pooled into one ranking; NaN if nothing is relevant.

    Pooling raw scores assumes they are comparable across queries (BM25 scores usually are not,
    so normalise per query first if needed). Queries without relevant items still add negatives.
    """
    if len(all_scores) != len(all_relevant):
        raise ValueError(f"got {len(all_scores)} score arrays but {len(all_relevant)} relevance arrays")
    if not all_scores:
        raise ValueError("no queries given")
    pairs = [_check(s, r) for s, r in zip(all_scores, all_relevant, strict=True)]
    return average_precision(np.concatenate([s for s, _ in pairs]), np.concatenate([r for _, r in pairs]))


def tie_stats(scores: ArrayLike) -> TieStats:
    """Count items that share their score with another item, and the largest tie block (-inf included)."""
    _, counts = np.unique(_check_scores(scores), return_counts=True)
    return TieStats(int(counts[counts > 1].sum()), int(counts.max()))
