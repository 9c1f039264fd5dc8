"""When should a meaning-only result be shown? Calibrate the similarity cut-off on the evaluation sets.

For each class-name query of COCO (human captions, 4,050 images) and VOC (human sentences, 792 images), the
meaning-only results are the images whose text holds no query word (BM25 finds nothing) but that the
semantic ranking returns. A cut-off rule keeps those with cosine >= max(absolute, relative x the query's
best cosine over all images). For each rule this prints the precision of the meaning-only results that
pass (share labelled with the class) and the recall they add (relevant meaning-only results that pass /
all relevant images), pooled over the queries, beside the number shown per query. Document vectors are
cached in --cache (the first run embeds every caption text with the packaged model, a few CPU minutes).

    python bench/calibrate_cutoff.py [--data-dir ../shared/data] [--cache /tmp/cutoff]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mllm_retrieval.evaluation.datasets import class_queries, default_data_root, load_coco_style_labels
from mllm_retrieval.evaluation.scoring import Variant, documents, score_matrix, text_documents
from mllm_retrieval.evaluation.sources import human_source
from mllm_retrieval.search.embedding import Embedder

SETS = {"coco": ("coco/annotations/labels_val2017.json", "coco/annotations/captions_val2017.json"),
        "voc": ("voc_sentences/labels.json", "voc_sentences/captions.json")}
ABSOLUTE = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
RELATIVE = (0.0, 0.7, 0.75, 0.8, 0.85, 0.9)


def matrices(name: str, root: Path, cache: Path, embedder: Embedder):
    """(keyword scores, cosines, relevance) of every query (rows) and image (columns)."""
    labels, captions = SETS[name]
    es = load_coco_style_labels(root / labels, root / captions, name=name)
    src = human_source(es)
    queries = class_queries(es.classes)
    owners, docs = documents(src, Variant())
    keyword = score_matrix(es.image_ids, owners, docs, queries)
    t_owners, texts = text_documents(src, Variant())
    path = cache / f"{name}-{embedder.name.replace('/', '_')}.npy"
    if path.exists():
        vecs = np.load(path)
    else:
        vecs = embedder.encode(texts, progress=True)
        np.save(path, vecs)
    qvecs = np.stack([embedder.encode_query(q) for q in queries.values()])
    sims = np.full((len(queries), len(es.image_ids)), -np.inf)
    position = {i: n for n, i in enumerate(es.image_ids)}
    cols = np.fromiter((position[o] for o in t_owners), dtype=np.int64, count=len(t_owners))
    for row, s in enumerate(qvecs @ vecs.T):
        np.maximum.at(sims[row], cols, s)
    relevant = np.array([[c in es.labels.get(i, ()) for i in es.image_ids] for c in queries])
    return keyword, sims, relevant


def measure(keyword, sims, relevant, absolute: float, relative: float) -> tuple[float, float, float]:
    """(precision of passing meaning-only results, recall they add, how many pass per query)."""
    best = sims.max(1, keepdims=True)
    meaning_only = ~np.isfinite(keyword) & np.isfinite(sims)
    passing = meaning_only & (sims >= np.maximum(absolute, relative * best))
    shown = int(passing.sum())
    right = int((passing & relevant).sum())
    return (right / shown if shown else float("nan"), right / max(int(relevant.sum()), 1),
            shown / len(sims))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_root())
    ap.add_argument("--cache", type=Path, default=Path("/tmp/mllmret-cutoff"))
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    embedder = Embedder()
    data = {name: matrices(name, args.data_dir, args.cache, embedder) for name in SETS}
    head = " | ".join(f"{n} precision | {n} recall added | {n} shown/query" for n in SETS)
    print(f"| absolute | relative | {head} |")
    print("|---|---|" + "---|" * (3 * len(SETS)))
    for a in ABSOLUTE:
        for r in RELATIVE:
            cells = []
            for keyword, sims, relevant in data.values():
                p, rec, shown = measure(keyword, sims, relevant, a, r)
                cells.append(f"{p:.3f} | {rec:.3f} | {shown:.1f}")
            print(f"| {a:.2f} | {r:.2f} | {' | '.join(cells)} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
