"""How to fuse the keyword (BM25) and semantic (cosine) rankings, and what feedback adds, per evaluation set.

    python bench/fusion_compare.py                          # prints one markdown table
    python bench/fusion_compare.py --results-md eval/RESULTS.md   # ...and writes it there as a section

The sets: COCO human captions and HALC LLaVA-1.5-7B (dev: choose here), VOC human captions and Less-is-More
LLaVA-1.5-7B (held out: do the choices carry over?). Each set's documents, BM25 scores and embeddings are
computed once, exactly as `mllmret eval` computes them (evaluation.scoring, the packaged all-MiniLM-L6-v2),
then ranked in several ways and scored by macro AP over the class-name queries. Rows:
- rrf k=K w=W: reciprocal rank fusion, sum of weight / (K + rank); W is the semantic weight (keyword 1).
- combsum / combmnz minmax / zscore: each ranking's scores normalised over the images it holds (min-max to
  [0, 1], or z-scores), summed (an image a ranking does not hold adds 0 / the ranking's lowest z);
  combmnz: combsum x the number of rankings that hold the image. convex a=A: A x minmax(BM25) + (1 - A)
  x cosine.
- "+feedback": the first images of the fused ranking refine both queries and the refined rankings are
  fused again (expansion.Feedback): their top words join the BM25 query (PRF) and their mean embedding
  moves the query vector (Rocchio); "PRF only" and "Rocchio only" switch one half off.
The row marked "default" is how `mllmret search` ranks (fusion.DEFAULT_FUSION with feedback); the one
marked "best on dev" has the highest mean over the dev sets.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mllm_retrieval.evaluation import metrics  # noqa: E402
from mllm_retrieval.evaluation.datasets import class_queries  # noqa: E402
from mllm_retrieval.evaluation.report import marked, md_table, replace_section  # noqa: E402
from mllm_retrieval.evaluation.runner import Variant  # noqa: E402
from mllm_retrieval.evaluation.scoring import (  # noqa: E402
    documents,
    embedded,
    feedback_refiner,
    hybrid_matrix,
    score_matrix,
    text_documents,
)
from mllm_retrieval.evaluation.setup import EvalConfig, load_eval_set  # noqa: E402
from mllm_retrieval.evaluation.sources import human_source, jsonl_sources, read_jsonl  # noqa: E402
from mllm_retrieval.search.expansion import Feedback  # noqa: E402
from mllm_retrieval.search.fusion import DEFAULT_FUSION, FUSIONS, fused_scores  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
HALC = DATA / "vlm_captions" / "halc_greedy64_val2014.jsonl"
LESS = DATA / "vlm_captions" / "lessismore_chair500_coco.jsonl"
SETS = {  # name: (dataset, jsonl file or None for the human captions, model, dev?)
    "COCO human": ("coco", None, None, True),
    "HALC LLaVA-1.5-7B": ("vlm", HALC, "llava-v1.5-7b", True),
    "VOC human": ("voc", None, None, False),
    "Less-is-More LLaVA-1.5-7B": ("vlm", LESS, "llava-v1.5-7b", False),
}
DEFAULT = f"{DEFAULT_FUSION} +feedback"
COMMAND = "python bench/fusion_compare.py --results-md eval/RESULTS.md"


def rankings(dataset: str, jsonl: Path | None, model: str | None, embedder) -> dict[str, np.ndarray]:
    """Every row's score matrix (queries x images) for one set, and its relevance matrix under "relevant"."""
    cache = {jsonl: read_jsonl(jsonl)} if jsonl else {}
    cfg = EvalConfig(dataset=dataset, data_dir=DATA, sources=[f"jsonl:{jsonl}"] if jsonl else [], model=model)
    evalset, _, _ = load_eval_set(cfg, cache)
    src = jsonl_sources(jsonl, evalset, model, False, cache[jsonl])[0] if jsonl else human_source(evalset)
    queries = class_queries(evalset.classes)
    owners, docs = documents(src, Variant())
    kw = score_matrix(evalset.image_ids, owners, docs, queries)
    text_owners, texts = text_documents(src, Variant())
    sem = embedded(evalset.image_ids, text_owners, texts, queries, embedder)
    prf = score_matrix(evalset.image_ids, owners, docs, queries, prf=True)
    rows = {"keyword (BM25)": kw, "keyword +PRF": prf, "semantic": sem.matrix}
    for label, fuse in fusions().items():
        rows[label] = hybrid_matrix(kw, sem.matrix, fuse)
    for name in ("rrf", "combmnz minmax", "combmnz zscore"):
        fuse = fusions()[name if name != "rrf" else "rrf k=60 w=1"]
        for tag, fb in (("+feedback", Feedback()), ("+PRF only", replace(Feedback(), beta=0.0)),
                        ("+Rocchio only", replace(Feedback(), terms=0))):
            refiner = feedback_refiner(evalset.image_ids, owners, docs, queries, sem, fb)
            rows[f"{name} {tag}"] = hybrid_matrix(kw, sem.matrix, fuse, refiner)
    refiner = feedback_refiner(evalset.image_ids, owners, docs, queries, sem)
    rows[DEFAULT] = hybrid_matrix(kw, sem.matrix, DEFAULT_FUSION, refiner)
    rows["relevant"] = relevance(evalset)
    return rows


def relevance(evalset) -> np.ndarray:
    """Classes x images: whether the image is labelled with the class."""
    return np.stack([np.fromiter((c in evalset.labels[i] for i in evalset.image_ids), dtype=bool)
                     for c in evalset.classes])


def fusions() -> dict[str, object]:
    """Fusions without feedback, by label: functions of two dense score vectors (-inf: not held)."""
    out: dict[str, object] = {}
    for k, w in ((60, 1.0), (10, 1.0), (30, 1.0), (120, 1.0), (60, 0.5), (60, 2.0)):
        out[f"rrf k={k} w={w:g}"] = lambda a, b, k=k, w=w: fused_scores(a, b, k, (1.0, w))
    for how in ("minmax", "zscore"):
        out[f"combsum {how}"] = lambda a, b, how=how: _comb(a, b, how, False)
        out[f"combmnz {how}"] = lambda a, b, how=how: _comb(a, b, how, True)
    for alpha in (0.3, 0.5):
        out[f"convex a={alpha:g}"] = lambda a, b, alpha=alpha: _convex(a, b, alpha)
    return out


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


def macro_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Mean over classes with a relevant image of average precision."""
    return float(np.mean([metrics.average_precision(s, r) for s, r in zip(scores, relevant, strict=True)
                          if r.any()]))


def table(aps: dict[str, dict[str, float]], names: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison; the default and the best on dev marked."""
    dev = [n for n in names if SETS[n][3]]
    labels = list(next(iter(aps.values())))
    fused = labels[3:]
    best = max(fused, key=lambda r: np.mean([aps[n][r] for n in dev])) if dev else None
    header = ["ranking", *(f"{n}{' (dev)' if SETS[n][3] else ''}" for n in names), "dev mean"]
    rows = []
    for r in labels:
        mark = "".join([" **(default)**" if r == DEFAULT else "", " (best on dev)" if r == best else ""])
        dev_mean = np.mean([aps[n][r] for n in dev]) if dev else float("nan")
        rows.append([r + mark, *(f"{aps[n][r]:.3f}" for n in names), f"{dev_mean:.3f}"])
    return header, rows


def setup(doc: str, sets: dict) -> tuple[argparse.Namespace, list[str], object]:
    """(arguments, chosen set names, the packaged embedder) of a comparison script."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(sets), help="comma-separated names of SETS")
    p.add_argument("--results-md", type=Path, help="also write the table into this generated RESULTS.md")
    args = p.parse_args()
    from mllm_retrieval.search.embedding import Embedder

    return args, args.sets.split(","), Embedder()


def publish(lines: list[str], results_md: Path | None, key: str, title: str, about: str) -> None:
    """Print the table; with a RESULTS.md, write it there as the generated section `key`."""
    print("\n".join(lines))
    if results_md:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        replace_section(results_md, key, marked(key, [title, "", about.format(now=now), "", *lines]))


def main() -> None:
    args, names, embedder = setup(__doc__, SETS)
    aps: dict[str, dict[str, float]] = {}
    for name in names:
        t0 = time.perf_counter()
        rows = rankings(*SETS[name][:3], embedder)
        relevant = rows.pop("relevant")
        aps[name] = {label: macro_ap(s, relevant) for label, s in rows.items()}
        print(f"{name}: {relevant.shape[1]} images, {relevant.shape[0]} classes, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    header, rows = table(aps, names)
    publish(md_table(header, rows), args.results_md, "fusion-compare",
            "## Hybrid ranking: fusion and feedback compared (macro AP)",
            f"Generated by `{COMMAND}` on {{now}}. Class names as queries, the default document of each set "
            "(full text), the packaged all-MiniLM-L6-v2; choices made on the dev sets only. The default "
            f"(`mllmret search`, the hybrid rows above): {FUSIONS[DEFAULT_FUSION]} with feedback "
            "(search/fusion.py, search/expansion.py). Methods: the docstring of bench/fusion_compare.py.")


if __name__ == "__main__":
    main()
