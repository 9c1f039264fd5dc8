"""Several descriptions of one image: one concatenated document, or each description counted on its own?

    python bench/run_aggregation.py                          # prints one markdown table
    python bench/run_aggregation.py --results-md eval/RESULTS.md   # ...and writes it there as a section

A library captioned twice (two models, or a model again after an upgrade) holds several runs per image, and
search builds one document from all of them (`documents.keyword_document`). Issue #21 asks whether BM25F-style
weighting of those runs ranks better. The evaluation data has real sets with several independent
descriptions per image: COCO's five human captions, VOC's fifty sentences, the three M-LLMs of HALC and the
six of Less-is-More (each description is one "run" here). Keyword documents per aggregation:
- concat: one document per image, every description's words (what search does);
- concat, each word once per run: term frequency = the number of descriptions that use the word (a vote,
  so one long description cannot outweigh the others by repeating a word);
- best run: each description its own document in one BM25 corpus, the image scores its best;
- sum over runs: each description its own document, the image scores the sum of their BM25 scores.
Rows give keyword macro AP and hybrid macro AP (the default fusion with feedback, `mllmret search`'s
ranking, over the same semantic side for every row: the embedding text of all descriptions). Sets marked
dev are the ones issue #21's defaults are chosen on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mllm_retrieval.evaluation.datasets import class_queries  # noqa: E402
from mllm_retrieval.evaluation.report import md_table  # noqa: E402
from mllm_retrieval.evaluation.scoring import (  # noqa: E402
    embedded,
    feedback_refiner,
    hybrid_matrix,
    score_matrix,
)
from mllm_retrieval.evaluation.setup import EvalConfig, load_eval_set  # noqa: E402
from mllm_retrieval.evaluation.sources import human_source, jsonl_sources, read_jsonl  # noqa: E402
from mllm_retrieval.search.documents import embedding_text, keyword_document  # noqa: E402
from mllm_retrieval.search.fusion import DEFAULT_FUSION  # noqa: E402
from mllm_retrieval.search.index.sparse_engine import SparseEngine  # noqa: E402
from mllm_retrieval.search.text import tokenize  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from fusion_compare import DATA, HALC, LESS, macro_ap, publish, relevance, setup  # noqa: E402

SETS = {  # name: (dataset, jsonl file or None for the human captions, dev?)
    "COCO human (5 captions)": ("coco", None, True),
    "HALC (3 M-LLMs)": ("vlm", HALC, True),
    "VOC human (50 sentences)": ("voc", None, False),
    "Less-is-More (6 M-LLMs)": ("vlm", LESS, False),
}
COMMAND = "python bench/run_aggregation.py --results-md eval/RESULTS.md"
Runs = dict[str, list[list]]  # evaluation image id -> its runs, each a list of Units


def runs_of(dataset: str, jsonl: Path | None):
    """(evaluation set, image id -> runs): each human caption, or each model's units, is one run."""
    cache = {jsonl: read_jsonl(jsonl)} if jsonl else {}
    cfg = EvalConfig(dataset=dataset, data_dir=DATA, sources=[f"jsonl:{jsonl}"] if jsonl else [],
                     per_model=jsonl is not None)
    evalset, _, _ = load_eval_set(cfg, cache)
    runs: Runs = {}
    if jsonl is None:
        for image_id, units in human_source(evalset).units.items():
            runs[image_id] = [[u] for u in units]
    else:
        for src in jsonl_sources(jsonl, evalset, None, True, cache[jsonl]):
            for image_id, units in src.units.items():
                runs.setdefault(image_id, []).append(units)
    return evalset, runs


def once_per_run(runs: list[list]) -> list[str]:
    """An image's tokens with each word counted once per run (term frequency = runs that use it)."""
    return [t for run in runs for t in dict.fromkeys(keyword_document(run))]


AGGREGATIONS: dict[str, tuple[Callable[[list[list]], list[list[str]]], Callable]] = {
    # name: (an image's runs -> its documents, how an image's document scores combine)
    "concat (search today)": (lambda runs: [keyword_document([u for r in runs for u in r])], np.maximum),
    "concat, each word once per run": (lambda runs: [once_per_run(runs)], np.maximum),
    "best run": (lambda runs: [keyword_document(r) for r in runs], np.maximum),
    "sum over runs": (lambda runs: [keyword_document(r) for r in runs], np.add),
}


def summed_matrix(image_ids: tuple[str, ...], owners: list[str], docs: list[list[str]],
                  queries: dict[str, str]) -> np.ndarray:
    """BM25 of every image for every query, the sum over an image's documents; -inf: no match (the max
    over them is evaluation's own `score_matrix`)."""
    position = {i: n for n, i in enumerate(image_ids)}
    owner_index = np.fromiter((position[o] for o in owners), dtype=np.int64, count=len(owners))
    engine = SparseEngine()
    engine.add(docs)
    out = np.full((len(queries), len(image_ids)), -np.inf)
    for row, query in enumerate(queries.values()):
        scores = engine.score_all(list(dict.fromkeys(tokenize(query))))
        matched = np.isfinite(scores)
        total = np.zeros(len(image_ids))
        np.add.at(total, owner_index[matched], scores[matched])
        held = np.zeros(len(image_ids), dtype=bool)
        held[owner_index[matched]] = True
        out[row] = np.where(held, total, -np.inf)
    return out


def aps_of(dataset: str, jsonl: Path | None, embedder) -> dict[str, tuple[float, float]]:
    """(keyword macro AP, hybrid macro AP) of each aggregation on one set."""
    evalset, runs = runs_of(dataset, jsonl)
    queries = class_queries(evalset.classes)
    relevant = relevance(evalset)
    text_owners = list(runs)
    texts = [embedding_text([u for r in runs[i] for u in r]) for i in text_owners]
    sem = embedded(evalset.image_ids, text_owners, texts, queries, embedder)
    out = {}
    for name, (build, combine) in AGGREGATIONS.items():
        pairs = [(i, d) for i, rs in runs.items() for d in build(rs) if d]
        owners, docs = [o for o, _ in pairs], [d for _, d in pairs]
        score = score_matrix if combine is np.maximum else summed_matrix
        kw = score(evalset.image_ids, owners, docs, queries)
        hybrid = float("nan")
        if combine is np.maximum:  # search's feedback rescoring takes an image's best document
            refiner = feedback_refiner(evalset.image_ids, owners, docs, queries, sem)
            hybrid = macro_ap(hybrid_matrix(kw, sem.matrix, DEFAULT_FUSION, refiner), relevant)
        out[name] = (macro_ap(kw, relevant), hybrid)
    return out


def cell(keyword: float, hybrid: float) -> str:
    """"keyword / hybrid" macro AP, — where a row has no hybrid."""
    return f"{keyword:.3f} / " + ("—" if np.isnan(hybrid) else f"{hybrid:.3f}")


def main() -> None:
    args, names, embedder = setup(__doc__, SETS)
    aps = {}
    for name in names:
        t0 = time.perf_counter()
        aps[name] = aps_of(*SETS[name][:2], embedder)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    header = ["keyword document", *(f"{n}{' (dev)' if SETS[n][2] else ''}: keyword / hybrid" for n in names)]
    rows = [[agg, *(cell(*aps[n][agg]) for n in names)] for agg in AGGREGATIONS]
    publish(md_table(header, rows), args.results_md, "run-aggregation",
            "## Several descriptions of one image: how to weigh them (macro AP)",
            f"Generated by `{COMMAND}` on {{now}}. Class names as queries; each human caption or "
            "each model's description is one run; keyword = BM25 over the row's documents, hybrid = the "
            "default fusion with feedback (`mllmret search`) over the same semantic side (— : feedback "
            "needs an image's best document). Methods: the docstring of bench/run_aggregation.py.")


if __name__ == "__main__":
    main()
