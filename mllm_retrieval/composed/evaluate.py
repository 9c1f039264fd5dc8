"""`mllmret eval-composed`: text-only composed image retrieval on CIRR, FashionIQ and GeneCIS.

Every gallery image is its caption (from other captioners, see benchmarks.py). Conditions, side by side:
the modification only; the reference image's caption only; reference caption + modification (one text);
the edit-aware composition of edits.compose (reference words minus removed ones, plus added ones); and,
given a trained composer (composer.py), the learned composition of the reference and modification vectors.
Modes: keyword = BM25 (SparseEngine.score_all), semantic = cosine of sentence embeddings (Embedder),
hybrid = RRF of the two (fusion.fused_scores). Edit-aware keyword ranks by weighted BM25 of the composed
terms; edit-aware semantic embeds ComposedQuery.text; images holding an excluded (removed) word are
demoted below every other matching image (not dropped). Recall counts ties fairly: with `h` allowed
images scoring above the target and `t` tied with it (target included), Recall@K = clip((K - h) / t, 0, 1),
the expected recall under a random order of ties.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..evaluation.report import marked, md_table
from ..hashing import file_sha256
from ..search.fusion import RRF_K, fused_scores
from ..search.index.sparse_engine import SparseEngine
from ..search.text import tokenize
from .benchmarks import Benchmark, Split, load
from .edits import REF_WEIGHT, compose

CONDITIONS = (("mod", "modification only"), ("ref", "reference caption only"),
              ("ref+mod", "reference caption + modification"), ("edit", "edit-aware composition"))
MODES = ("keyword", "semantic", "hybrid")
EDIT_MODES = ("keyword", "hybrid")  # the edit-aware rows worth reporting (semantic shown for completeness)
LEARNED = {"tirg": "learned", "encoder": "finetuned"}  # row condition per composer kind
LEARNED_MODES = ("semantic", "hybrid")  # its vector alone; fused (RRF) with ref+mod BM25

REFERENCES = {
    "cirr": [
        "Data README (plain BM25, reference caption + modification, same caption files; other runs): "
        "BLIP-2 captions R@1 ≈ 9-10, R@10 ≈ 37-40, R@50 ≈ 65; WeiMoCIR MLLM captions R@1 ≈ 10, R@10 ≈ 42.",
        "Published CIReVL (ViT-L/14 CLIP + GPT-3.5 rewrite; another system, with images): CIRR **test** "
        "R@1 24.6, R@10 64.9 (test, not val: not directly comparable).",
    ],
    "fashioniq": [
        "Data README (plain BM25, reference caption + modification, same caption files): val average "
        "R@10 ≈ 11.",
        "Published CIReVL (ViT-L/14 CLIP + GPT-3.5 rewrite; another system, with images): FashionIQ val "
        "average R@10 28.6, R@50 48.6.",
    ],
    "genecis": [
        "Random ranking of the 15 candidates: R@1 6.7, R@2 13.3, R@3 20.0. No text-only reference figure "
        "is at hand; GeneCIS here is a proxy (human captions, one-word conditions).",
    ],
}


def expected_recall(scores: np.ndarray, target: int, ks: Sequence[int],
                    allowed: np.ndarray | None = None) -> dict[int, float]:
    """Recall@K of one target among the allowed items, ties broken at random (expected value)."""
    scores = np.asarray(scores, dtype=np.float64)
    allowed = np.ones(len(scores), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    s = scores[target]
    higher = int(np.count_nonzero(allowed & (scores > s)))
    tied = int(np.count_nonzero(allowed & (scores == s))) or 1
    return {k: float(np.clip((k - higher) / tied, 0.0, 1.0)) for k in ks}


def demote(scores: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Excluded items keep their order among themselves but fall below every other finite score."""
    out = np.asarray(scores, dtype=np.float64).copy()
    finite = np.isfinite(out)
    hit = excluded & finite
    if hit.any():
        span = float(out[finite].max() - out[finite].min()) + 1.0
        out[hit] -= span
    return out


class _Vectors:
    """Sentence vectors of every text needed, encoded once."""

    def __init__(self, embedder, texts: Sequence[str], progress: bool) -> None:
        self.index = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        self.vecs = embedder.encode(list(self.index), progress=progress) if self.index else None

    def __getitem__(self, text: str) -> np.ndarray:
        return self.vecs[self.index[text]]


def _row_labels(modes: Sequence[str], learned: Sequence[str] = ()) -> list[tuple[str, str]]:
    rows = []
    for cond, _ in CONDITIONS:
        for mode in modes:
            if cond == "edit" and mode not in EDIT_MODES:
                continue
            rows.append((cond, mode))
    for cond in learned:
        rows += [(cond, mode) for mode in LEARNED_MODES]
    return rows


def evaluate_split(split: Split, bench: Benchmark, modes: Sequence[str], embedder=None,
                   progress: bool = False, composers: Sequence = ()) -> dict:
    """Mean metrics per (condition, mode) row over the split's queries (learned rows per composer)."""
    pos = {g: i for i, g in enumerate(split.gallery)}
    texts = [split.texts.get(g, "") for g in split.gallery]
    engine = SparseEngine()
    engine.add([tokenize(t) for t in texts])
    ks, subset_ks = bench.ks, bench.subset_ks
    queries = [q for q in split.queries if q.targets[0] in pos]
    semantic = any(m in ("semantic", "hybrid") for m in modes) or bool(composers)
    ref_text = {q.qid: split.texts.get(q.reference, "") for q in queries}
    composed = {q.qid: compose(ref_text[q.qid], q.modification) for q in queries}
    vectors = gallery_vecs = None
    if semantic:
        needed = [*texts]
        for q in queries:
            needed += [q.modification, ref_text[q.qid], f"{ref_text[q.qid]} {q.modification}",
                       composed[q.qid].text]
        vectors = _Vectors(embedder, needed, progress)
        gallery_vecs = np.stack([vectors[t] for t in texts])
    learned: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}  # condition -> (gallery, queries)
    for composer in composers:
        def embed(ts, vectors=vectors):
            return np.stack([vectors[t] for t in ts])

        qvecs = composer.query_vectors([ref_text[q.qid] for q in queries], [q.modification for q in queries],
                                       embed) if queries else []
        learned[LEARNED[composer.kind]] = (composer.gallery_vectors(texts, embed),
                                           {q.qid: v for q, v in zip(queries, qvecs, strict=True)})
    rows = _row_labels(modes, learned=list(learned))
    sums = {r: {} for r in rows}
    for q in queries:
        cq = composed[q.qid]
        allowed = np.ones(len(split.gallery), dtype=bool)
        if q.candidates is not None:
            allowed[:] = False
            allowed[[pos[c] for c in q.candidates if c in pos]] = True
        if split.exclude_reference and q.reference in pos:
            allowed[pos[q.reference]] = False
        subset = None
        if q.subset is not None and subset_ks:
            subset = np.zeros(len(split.gallery), dtype=bool)
            subset[[pos[m] for m in q.subset if m in pos]] = True
        excluded = np.zeros(len(split.gallery), dtype=bool)
        for t in cq.exclude:
            excluded[engine.docs_with(t)] = True
        query_text = {"mod": q.modification, "ref": ref_text[q.qid],
                      "ref+mod": f"{ref_text[q.qid]} {q.modification}", "edit": cq.text}
        cache: dict[tuple[str, str], np.ndarray] = {}

        def scores(cond: str, mode: str, cq=cq, query_text=query_text, excluded=excluded, cache=cache,
                   qid=q.qid):
            key = (cond, mode)
            if key in cache:
                return cache[key]
            if cond in learned:
                s = (learned[cond][0] @ learned[cond][1][qid] if mode == "semantic"
                     else fused_scores(scores("ref+mod", "keyword"), scores(cond, "semantic")))
            elif mode == "keyword":
                s = (engine.score_all(cq.terms, cq.weights) if cond == "edit"
                     else engine.score_all(tokenize(query_text[cond])))
            elif mode == "semantic":
                s = gallery_vecs @ vectors[query_text[cond]]
            else:
                s = fused_scores(scores(cond, "keyword"), scores(cond, "semantic"))
            if cond == "edit" and mode != "semantic":
                s = demote(s, excluded)
            cache[key] = s
            return s

        target = pos[q.targets[0]]
        for row in rows:
            s = scores(*row)
            acc = sums[row]
            for k, v in expected_recall(s, target, ks, allowed).items():
                acc[f"R@{k}"] = acc.get(f"R@{k}", 0.0) + v
            if subset is not None:
                for k, v in expected_recall(s, target, subset_ks, subset).items():
                    acc[f"Rs@{k}"] = acc.get(f"Rs@{k}", 0.0) + v
    n = max(len(queries), 1)
    return {"n_queries": len(queries), "n_gallery": len(split.gallery),
            "rows": {f"{c} / {m}": {k: 100.0 * v / n for k, v in sums[(c, m)].items()} for c, m in rows}}


def run_composed(dataset: str, data_dir: Path | None = None, captions: str | None = None,
                 modes: Sequence[str] = MODES, embedder=None, device: str | None = None,
                 progress: bool = True, command: str = "", composers: Sequence[str | Path] = ()) -> dict:
    """Evaluate every row on every split of a benchmark; returns the results dict (results.json).

    `composers` are outputs of `mllmret train-composer` (a TIRG .safetensors or a fine-tuned encoder
    folder): each adds its learned rows. A TIRG head needs the evaluation's embedder to be its own."""
    from .. import __version__
    from ..errors import MllmretError
    from ..search.embedding import Embedder

    bad = [m for m in modes if m not in MODES]
    if bad:
        raise MllmretError(f"--modes takes {', '.join(MODES)}, not {', '.join(bad)}")
    from .composer import load_composer

    learned = [load_composer(c, device) for c in composers]
    if len({c.kind for c in learned}) < len(learned):
        raise MllmretError("give at most one --composer of each kind (a TIRG file, an encoder folder)")
    composer_info = [_composer_info(Path(path), c) for path, c in zip(composers, learned, strict=True)]
    bench = load(dataset, data_dir, captions)
    emb = None
    if any(m != "keyword" for m in modes) or learned:
        emb = embedder if embedder is not None and not isinstance(embedder, str) else Embedder(
            embedder, device=device)
    for c in learned:
        if c.kind == "tirg":
            c.check_embedder(getattr(emb, "name", None))
    splits = {s.name: evaluate_split(s, bench, modes, emb, progress, learned) for s in bench.splits}
    labels = list(next(iter(splits.values()))["rows"])
    average = None
    if bench.average_splits and len(splits) > 1:
        average = {r: {k: float(np.mean([s["rows"][r][k] for s in splits.values()]))
                       for k in next(iter(splits.values()))["rows"][r]} for r in labels}
    return {
        "task": "composed", "dataset": dataset, "captions": captions or "blip2",
        "description": bench.description, "text_source": bench.text_source, "modes": list(modes),
        "embedder": getattr(emb, "name", None), "ref_weight": REF_WEIGHT, "rrf_k": RRF_K,
        "command": command, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"mllm-retrieval": __version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "data_files": {str(p): file_sha256(p) for s in bench.splits for p in s.files},
        "splits": splits, "average": average, "references": REFERENCES.get(dataset, []),
        "composers": composer_info,
    }


def _composer_info(path: Path, composer) -> dict:
    """What the results say about a composer: its file, hash, kind, training data and chosen epoch."""
    path = path.expanduser()
    weights = path / "model.safetensors" if path.is_dir() else path
    return {"file": path.name, "sha256": file_sha256(weights) if weights.is_file() else None,
            "kind": composer.kind, "condition": LEARNED[composer.kind], "embedder": composer.embedder,
            "base": composer.meta.get("base"), "trained_on": composer.meta.get("trained_on"),
            "best_epoch": composer.meta.get("report", {}).get("best_epoch"),
            "epochs": composer.meta.get("epochs")}


def _columns(result: dict) -> list[tuple[str, str | None, str]]:
    """(header, split or None for the average, metric) per table column."""
    splits = result["splits"]
    first = next(iter(splits.values()))
    metrics = list(next(iter(first["rows"].values())))
    cols = []
    for name in splits:
        prefix = "" if len(splits) == 1 else f"{name} "
        cols += [(f"{prefix}{m}", name, m) for m in metrics]
    if result.get("average"):
        cols += [(f"avg {m}", None, m) for m in metrics]
    return cols


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows (percent, one decimal) of the results table."""
    cols = _columns(result)
    labels = list(next(iter(result["splits"].values()))["rows"])
    rows = []
    for label in labels:
        vals = [(result["average"] if split is None else result["splits"][split]["rows"])[label][m]
                for _, split, m in cols]
        rows.append([label, *(f"{v:.1f}" for v in vals)])
    return ["condition / mode", *(c[0] for c in cols)], rows


def format_table(result: dict) -> str:
    """Plain text table for the terminal."""
    from ..evaluation.report import text_table

    head = f"{result['description']} — text: {result['text_source']} (recall in %)"
    return "\n".join([head, *text_table(*table_rows(result), left={0})])


def section_key(result: dict) -> str:
    """Identity of a result's markdown section: dataset, caption source, modes, embedder."""
    ident = [result["task"], result["dataset"], result["captions"], result["modes"], result["embedder"]]
    return "composed-" + hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:12]


def markdown_section(result: dict) -> str:
    """The result as one RESULTS.md section between BEGIN/END markers."""
    key = section_key(result)
    header, rows = table_rows(result)
    v = result["versions"]
    n = {name: s["n_queries"] for name, s in result["splits"].items()}
    metric_note = ("R@K with the reference image removed from the gallery; Rs@K = Recall_subset@K within "
                   "img_set.members minus the reference" if result["dataset"] == "cirr" else
                   "R@K over the whole category gallery (reference kept, as in the usual protocol); "
                   "avg = mean of the three categories" if result["dataset"] == "fashioniq" else
                   "R@K among the 15 candidates (target + 14 gallery images); avg = mean of the two tasks")
    lines = [
        f"## Composed retrieval: {result['description']}"
        + (f", {result['captions']} captions" if result["dataset"] == "cirr" else ""), "",
        f"Generated by `{result['command'] or 'mllm_retrieval.composed.evaluate.run_composed'}` on "
        f"{result['created']} (mllm-retrieval {v['mllm-retrieval']}, numpy {v['numpy']}, "
        f"Python {v['python']}).", "",
        f"- Image text: **{result['text_source']}**. These captions come from **other captioners than "
        "ours** (no image was captioned by mllmret): the numbers measure the query side (composition, "
        "ranking), not our M-LLM's captions.",
        f"- Queries per split: {', '.join(f'{k} {v}' for k, v in n.items())}. Metrics: {metric_note}; "
        "recall in %, ties counted at their expected value.",
        "- Conditions: mod = the modification text only; ref = the reference image's caption only; "
        "ref+mod = the two texts joined; edit = edits.compose (reference words minus the words the "
        f"modification removes, weight {result['ref_weight']:g}, plus the words it adds, weight 1; images "
        "holding a removed word are demoted below the others). Modes: keyword = BM25; semantic = cosine of "
        f"{result['embedder'] or '-'} embeddings; hybrid = RRF (k={result['rrf_k']:g}) of the two.",
        *(_composer_line(c) for c in result.get("composers") or ()),
        "- Reference figures (**other systems or other runs, not ours**):",
        *(f"  - {r}" for r in result["references"]),
        "- Data files (sha256): " + "; ".join(f"`{Path(p).name}` {h[:16]}…"
                                               for p, h in result["data_files"].items()),
        "",
        *md_table(header, rows),
    ]
    return marked(key, lines)


def _composer_line(c: dict) -> str:
    """One bullet describing a learned composer's rows."""
    what = (f"the TIRG-style composer `{c['file']}` composing the {c['embedder']} vectors of the reference "
            "caption and the modification" if c["kind"] == "tirg" else
            f"`{c['file']}`, {c['base']} fine-tuned end to end on \"reference [SEP] modification\" -> target "
            "caption; it also embeds the gallery")
    return (f"- {c['condition']} = {what} (sha256 {(c['sha256'] or '-')[:12]}…; trained by `mllmret "
            f"train-composer` on {c['trained_on'] or 'its training set'}, never on this evaluation split; "
            f"epoch {c['best_epoch']} of {c['epochs']} picked on held-out training queries); "
            f"{c['condition']} / hybrid = RRF of its ranking and the ref+mod BM25 ranking.")


def update_markdown(result: dict, path: Path) -> Path:
    """Insert or replace the result's section in a generated RESULTS.md (other sections stay)."""
    from ..evaluation.report import replace_section

    return replace_section(path, section_key(result), markdown_section(result))


def write_json(result: dict, path: Path) -> Path:
    """results.json."""
    from ..evaluation.report import write_text

    write_text(path, json.dumps(result, indent=1, allow_nan=False) + "\n")
    return path
