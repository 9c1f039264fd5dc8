"""How to fuse the keyword (BM25) and semantic (cosine) rankings, compared on the evaluation sets.

    python bench/fusion_compare.py                 # COCO + HALC LLaVA (dev), VOC + Less-is-More (held out)

The two score matrices of each set (one row per class-name query, one column per image) are computed
once, exactly as `mllmret eval` computes them (evaluation.scoring, the packaged all-MiniLM-L6-v2), then
fused in several ways and scored by macro AP. Methods:
- rrf k=K w=W: reciprocal rank fusion, sum of weight / (K + rank); W is the semantic weight (keyword 1).
  "rrf k=60 w=1" is today's hybrid (`fusion.fuse`).
- combsum minmax / zscore: each ranking's scores normalised over the images it holds (min-max to [0, 1],
  or z-scores), summed (an image a ranking does not hold adds 0 / the ranking's minimum);
  combmnz: combsum x the number of rankings that hold the image.
- convex a=A: A x minmax(BM25) + (1 - A) x cosine.
- "+PRF" rows: the keyword ranking is BM25 with pseudo-relevance feedback (`--prf`, expansion.py), fused
  with the same cosine ranking: the query side in hybrid mode.
Choose on the dev sets only (COCO human captions, HALC LLaVA-1.5-7B); the held-out sets say whether it
carries over. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mllm_retrieval.evaluation import metrics  # noqa: E402
from mllm_retrieval.evaluation.datasets import class_queries  # noqa: E402
from mllm_retrieval.evaluation.runner import Variant  # noqa: E402
from mllm_retrieval.evaluation.scoring import (  # noqa: E402
    documents,
    score_matrix,
    semantic_matrix,
    text_documents,
)
from mllm_retrieval.evaluation.setup import EvalConfig, load_eval_set  # noqa: E402
from mllm_retrieval.evaluation.sources import human_source, jsonl_sources, read_jsonl  # noqa: E402
from mllm_retrieval.search.fusion import fused_scores  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
HALC = DATA / "vlm_captions" / "halc_greedy64_val2014.jsonl"
LESS = DATA / "vlm_captions" / "lessismore_chair500_coco.jsonl"
SETS = {  # name: (dataset, jsonl file or None for the human captions, model, dev?)
    "COCO human": ("coco", None, None, True),
    "HALC LLaVA-1.5-7B": ("vlm", HALC, "llava-v1.5-7b", True),
    "VOC human": ("voc", None, None, False),
    "Less-is-More LLaVA-1.5-7B": ("vlm", LESS, "llava-v1.5-7b", False),
}


def matrices(dataset: str, jsonl: Path | None, model: str | None, embedder):
    """(evaluation set, BM25 matrix, BM25+PRF matrix, cosine matrix) of one set's default document variant."""
    cache = {jsonl: read_jsonl(jsonl)} if jsonl else {}
    cfg = EvalConfig(dataset=dataset, data_dir=DATA, sources=[f"jsonl:{jsonl}"] if jsonl else [], model=model)
    evalset, _, _ = load_eval_set(cfg, cache)
    src = jsonl_sources(jsonl, evalset, model, False, cache[jsonl])[0] if jsonl else human_source(evalset)
    queries = class_queries(evalset.classes)
    owners, docs = documents(src, Variant())
    kw = score_matrix(evalset.image_ids, owners, docs, queries)
    prf = score_matrix(evalset.image_ids, owners, docs, queries, prf=True)
    text_owners, texts = text_documents(src, Variant())
    sem = semantic_matrix(evalset.image_ids, text_owners, texts, queries, embedder)
    return evalset, kw, prf, sem


def normalised(s: np.ndarray, how: str) -> np.ndarray:
    """Scores over the images a ranking holds, normalised; 0 (min-max) or the minimum (z) elsewhere."""
    finite = np.isfinite(s)
    out = np.zeros(len(s))
    if not finite.any():
        return out
    v = s[finite]
    if how == "minmax":
        out[finite] = (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else 1.0
    else:
        z = (v - v.mean()) / (v.std() or 1.0)
        out[:] = z.min()
        out[finite] = z
    return out


def methods() -> dict[str, object]:
    out: dict[str, object] = {}
    for k in (10, 30, 60, 120):
        for w in (0.5, 1.0, 1.5, 2.0):
            out[f"rrf k={k} w={w:g}"] = lambda a, b, k=k, w=w: fused_scores(a, b, k, (1.0, w))
    for how in ("minmax", "zscore"):
        out[f"combsum {how}"] = lambda a, b, how=how: _comb(a, b, how, False)
        out[f"combmnz {how}"] = lambda a, b, how=how: _comb(a, b, how, True)
    for alpha in (0.1, 0.2, 0.3, 0.5, 0.7):
        out[f"convex a={alpha:g}"] = lambda a, b, alpha=alpha: _convex(a, b, alpha)
    return out


def _comb(a: np.ndarray, b: np.ndarray, how: str, mnz: bool) -> np.ndarray:
    held = np.isfinite(a).astype(int) + np.isfinite(b)
    s = normalised(a, how) + normalised(b, how)
    if mnz:
        s = s * held
    return np.where(held > 0, s, -np.inf)


def _convex(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    held = np.isfinite(a) | np.isfinite(b)
    s = alpha * normalised(a, "minmax") + (1 - alpha) * np.where(np.isfinite(b), b, -1.0)
    return np.where(held, s, -np.inf)


def macro_ap(evalset, fused: np.ndarray) -> float:
    aps = []
    for name, s in zip(evalset.classes, fused, strict=True):
        relevant = np.fromiter((name in evalset.labels[i] for i in evalset.image_ids), dtype=bool)
        if relevant.any():
            aps.append(metrics.average_precision(s, relevant))
    return float(np.mean(aps))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated names of SETS")
    args = p.parse_args()
    from mllm_retrieval.search.embedding import Embedder

    embedder = Embedder()
    table: dict[str, dict[str, float]] = {}
    names = args.sets.split(",")
    for name in names:
        t0 = time.perf_counter()
        evalset, kw, prf, sem = matrices(*SETS[name][:3], embedder)
        table[name] = {"keyword (BM25)": macro_ap(evalset, kw), "keyword +PRF": macro_ap(evalset, prf),
                       "semantic": macro_ap(evalset, sem)}
        today = np.stack([fused_scores(a, b) for a, b in zip(kw, sem, strict=True)])
        table[name]["hybrid today (fuse)"] = macro_ap(evalset, today)
        for label, fn in methods().items():
            for tag, keyword in (("", kw), (" +PRF", prf)):
                fused = np.stack([fn(a, b) for a, b in zip(keyword, sem, strict=True)])
                table[name][label + tag] = macro_ap(evalset, fused)
        print(f"{name}: {len(evalset.image_ids)} images, {len(evalset.classes)} classes, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    dev = [n for n in names if SETS[n][3]]
    rows = list(next(iter(table.values())))
    best = max(rows[4:], key=lambda r: np.mean([table[n][r] for n in dev])) if dev else None
    print("| method | " + " | ".join(f"{n}{' (dev)' if SETS[n][3] else ''}" for n in names) + " | dev mean |")
    print("|---|" + "---|" * (len(names) + 1))
    for r in rows:
        mark = " (best on dev)" if r == best else ""
        dev_mean = np.mean([table[n][r] for n in dev]) if dev else float("nan")
        print(f"| {r}{mark} | " + " | ".join(f"{table[n][r]:.3f}" for n in names) + f" | {dev_mean:.3f} |")


if __name__ == "__main__":
    main()
