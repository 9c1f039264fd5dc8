"""Run an evaluation: load the set, build each condition's documents, score every image for every query.

A condition is one source's text (one model), one document variant (see `Variant`), one ranking mode and
one query set (class names; or, for keyword ranking, class names + synonyms with `expand`, or + pseudo-
relevance feedback with `prf`). Every image of the evaluation set gets a score for every query. keyword:
BM25 over the condition's documents (the corpus is the documents that exist), -inf for an image with no
matching word or no text at all, so those images form one tie block ranked last. semantic: the cosine
between the query's and the document's sentence embeddings (-inf only without text). hybrid: the two
rankings fused (`fusion.fused_scores`, over `fusion.fuse`) with search's feedback (`feedback_refiner`),
exactly as `mllmret search` ranks by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..hashing import file_sha256
from ..search import fusion
from ..search.text import tokenize
from . import metrics
from .datasets import EvalSet, class_queries
from .scoring import (
    Variant,
    documents,
    embedded,
    feedback_refiner,
    hybrid_matrix,
    score_matrix,
    text_documents,
    variants,
)
from .setup import (  # noqa: F401  (EvalConfig and its errors are part of the runner's API)
    DATASETS,
    EvalConfig,
    EvalConfigError,
    check_modes,
    clip_images,
    clip_model,
    conditions_of,
    db_source_texts,
    load_eval_set,
    versions,
)
from .sources import (
    JsonlRecord,
    SourceText,
    human_source,
    jsonl_sources,
    parse_spec,
    read_jsonl,
)


@dataclass
class ClassRow:
    """One class of one condition: metrics, the no-match block and ties, the interpolated PR curve."""

    result: metrics.ClassResult
    query: str
    no_match: int
    relevant_no_match: int
    tied_items: int
    largest_tie_block: int
    curve: np.ndarray


@dataclass
class Condition:
    """The result of one condition over the whole evaluation set."""

    label: str
    source: str
    variant: Variant | None
    expand: bool
    n_images: int
    n_with_text: int
    n_with_document: int
    n_documents: int
    notes: list[str] = field(default_factory=list)
    rows: list[ClassRow] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    micro_ap: float = float("nan")
    micro_prevalence: float = float("nan")
    mode: str = "keyword"
    prf: bool = False

    @property
    def coverage(self) -> float:
        """Share of evaluation images with a non-empty document in this condition."""
        return self.n_with_document / self.n_images

    @property
    def no_match_share(self) -> float:
        """Mean over classes of the share of images in the -inf (no matching word) tie block."""
        return float(np.mean([r.no_match for r in self.rows])) / self.n_images

    @property
    def missed_relevant_share(self) -> float:
        """Share of all (class, relevant image) pairs that sit in the -inf block."""
        total = sum(r.result.n_relevant for r in self.rows)
        return sum(r.relevant_no_match for r in self.rows) / total if total else float("nan")

    def mean_curve(self) -> np.ndarray:
        """Mean interpolated precision at `metrics.DEFAULT_RECALL_LEVELS` over evaluated classes."""
        kept = [r.curve for r in self.rows if r.result.n_relevant > 0]
        return np.mean(kept, axis=0) if kept else np.full(metrics.DEFAULT_RECALL_LEVELS.shape, np.nan)


HYBRID_LABEL = f"{fusion.FUSIONS[fusion.DEFAULT_FUSION]} +feedback"  # how `mllmret search` ranks by default


def evaluate_condition(evalset: EvalSet, src: SourceText, variant: Variant, expand: bool,
                       progress: bool = False, docs: tuple[list[str], list[list[str]]] | None = None,
                       *, mode: str = "keyword", prf: bool = False, embedder=None,
                       cache: dict | None = None) -> Condition:
    """Score and measure one condition (`docs`: its `documents`, when already built; `cache`: score
    matrices shared by the conditions of one source and variant, so hybrid reuses keyword and semantic)."""
    if mode not in fusion.MODES:
        raise EvalConfigError(f"unknown ranking mode {mode!r}: use {', '.join(fusion.MODES)}")
    if mode != "keyword" and (expand or prf):
        raise EvalConfigError("query expansion (--expand, --prf) is a keyword-ranking condition")
    cache = {} if cache is None else cache
    queries = class_queries(evalset.classes, expand=expand)
    owners, docs = docs or documents(src, variant)
    label = src.label + (f" | {variant.label}" if src.has_tiles or src.has_tags else "")
    label += " | +synonyms (--expand)" if expand else ""
    label += " | +PRF (--prf)" if prf else ""
    n_docs, covered = len(docs), set(owners)
    if mode != "keyword":
        from ..search.embedding import get_embedder

        embedder = get_embedder(embedder)
        label += (f" | semantic [{embedder.name}]" if mode == "semantic" else
                  f" | hybrid {HYBRID_LABEL} [{embedder.name}]")
        if "semantic" not in cache:
            text_owners, texts = text_documents(src, variant)
            sem = embedded(evalset.image_ids, text_owners, texts, queries, embedder, progress)
            cache["semantic"] = (sem, len(texts), set(text_owners))
        sem, n_docs, covered = cache["semantic"]
    if mode != "semantic" and (expand, prf) not in cache:
        cache[(expand, prf)] = score_matrix(evalset.image_ids, owners, docs, queries, progress, label, prf)
    scores = {"keyword": lambda: cache[(expand, prf)], "semantic": lambda: sem.matrix,
              "hybrid": lambda: hybrid_matrix(
                  cache[(expand, prf)], sem.matrix, fusion.DEFAULT_FUSION,
                  feedback_refiner(evalset.image_ids, owners, docs, queries, sem))}[mode]()
    empty = [name for name, q in queries.items() if not tokenize(q)]
    notes = list(src.notes) + ([f"queries with no searchable word: {', '.join(empty)}"] if empty else [])
    return measure(evalset, queries, scores, Condition(
        label=label, source=src.label, variant=variant, expand=expand, n_images=len(evalset.image_ids),
        n_with_text=sum(1 for i in evalset.image_ids if src.units.get(i)),
        n_with_document=len(covered), n_documents=n_docs, notes=notes, mode=mode, prf=prf,
    ))


def measure(evalset: EvalSet, queries: dict[str, str], scores: np.ndarray, c: Condition) -> Condition:
    """Fill a condition's per-class rows, macro summary and micro AP from its score matrix."""
    normalised, relevances = [], []
    for name, s in zip(evalset.classes, scores, strict=True):
        relevant = np.fromiter((name in evalset.labels[i] for i in evalset.image_ids), dtype=bool)
        ties = metrics.tie_stats(s)
        c.rows.append(ClassRow(
            metrics.class_result(name, s, relevant), queries[name], int(np.isneginf(s).sum()),
            int((np.isneginf(s) & relevant).sum()), ties.n_tied_items, ties.largest_tie_block,
            metrics.interpolated_curve(s, relevant),
        ))
        normalised.append(_minmax(s))
        relevances.append(relevant)
    pooled = np.concatenate(relevances)
    c.summary = metrics.summarize([r.result for r in c.rows])
    c.micro_ap = metrics.micro_ap(normalised, relevances) if pooled.any() else float("nan")
    c.micro_prevalence = float(pooled.mean())
    return c


def clip_condition(evalset: EvalSet, images: Path, model: str, device: str = "auto",
                   progress: bool = False) -> Condition:
    """The dense baseline: CLIP cosine similarity of each image file to "a photo of a {class query}"."""
    try:
        from .clip_baseline import DEFAULT_PROMPT, clip_scores
    except ImportError as e:
        raise EvalConfigError(f"--baseline clip is not available in this install: {e}") from None
    if not Path(images).is_dir():
        raise EvalConfigError(f"--baseline clip needs the images: {str(images)!r} is not a folder (--images)")
    paths = {i: Path(images, evalset.file_names[i]) for i in evalset.image_ids}
    present = [i for i in evalset.image_ids if paths[i].is_file()]
    queries = class_queries(evalset.classes)
    found = clip_scores([paths[i] for i in present], queries, model, device, progress=progress)
    scores = np.full((len(queries), len(evalset.image_ids)), -np.inf)
    position = {i: n for n, i in enumerate(evalset.image_ids)}
    columns = [position[i] for i in present]
    for row, name in enumerate(queries):
        if present:
            scores[row, columns] = found[name]
    readable = int(np.isfinite(scores[0]).sum()) if len(queries) else 0
    notes = [f"{len(evalset.image_ids) - len(present):,} evaluation images have no file in {images} "
             "(score -inf)"] if len(present) < len(evalset.image_ids) else []
    if readable < len(present):
        notes.append(f"{len(present) - readable} image files could not be read (score -inf)")
    label = f"CLIP baseline [{model}] | cosine to {DEFAULT_PROMPT.format('{class}')!r}"
    return measure(evalset, queries, scores, Condition(
        label=label, source=f"CLIP baseline [{model}]", variant=None, expand=False,
        n_images=len(evalset.image_ids), n_with_text=len(present), n_with_document=readable,
        n_documents=readable, notes=notes,
    ))


def _minmax(s: np.ndarray) -> np.ndarray:
    """Scores mapped to [0, 1] per query over matched images (-inf stays), so queries can be pooled."""
    finite = np.isfinite(s)
    if not finite.any():
        return s.copy()
    lo, hi = s[finite].min(), s[finite].max()
    out = s.copy()
    out[finite] = (s[finite] - lo) / (hi - lo) if hi > lo else 1.0
    return out


@dataclass
class EvalReport:
    """All conditions of one run, with what is needed to reproduce it."""

    evalset: str
    description: str
    image_ids: tuple[str, ...]
    classes: tuple[str, ...]
    queries: dict[str, str]
    expanded_queries: dict[str, str] | None
    conditions: list[Condition]
    data_files: dict[str, str]
    config: dict
    versions: dict[str, str]
    created: str
    command: str | None


def run_eval(cfg: EvalConfig) -> EvalReport:
    """Load the evaluation set and every source, then evaluate every condition."""
    specs = [parse_spec(s) for s in cfg.sources]
    clip_folder = clip_images(cfg) if cfg.baseline is not None else None
    jsonl_cache: dict[Path, tuple[list[JsonlRecord], list[str]]] = {
        p: read_jsonl(p) for k, p in specs if k == "jsonl"}
    evalset, description, files = load_eval_set(cfg, jsonl_cache)
    if not specs and evalset.captions:
        specs = [("human", None)]
    elif not specs and cfg.baseline is None:
        raise EvalConfigError(f"evaluation set {evalset.name!r} has no human captions: give --source")
    sources: list[SourceText] = []
    for kind, path in specs:
        if kind == "human":
            sources.append(human_source(evalset))
        elif kind == "jsonl":
            sources += jsonl_sources(path, evalset, cfg.model, cfg.per_model, jsonl_cache[path])
        else:
            sources += db_source_texts(cfg, evalset)
    modes = check_modes(cfg.modes)
    embedder = None
    if any(m != "keyword" for m in modes):
        from ..search.embedding import Embedder

        embedder = Embedder(cfg.embedder, device=cfg.device)
    conditions = []
    for src in sources:
        for variant in variants(src, cfg.ablate):
            docs, cache = documents(src, variant), {}
            for mode, expand, prf in conditions_of(modes, cfg.expand, cfg.prf):
                conditions.append(evaluate_condition(evalset, src, variant, expand, cfg.progress, docs,
                                                     mode=mode, prf=prf, embedder=embedder, cache=cache))
    if clip_folder is not None:
        conditions.append(clip_condition(evalset, clip_folder, clip_model(cfg), cfg.device, cfg.progress))
    for src in sources:
        files += src.files
    return EvalReport(
        evalset=evalset.name, description=description, image_ids=evalset.image_ids,
        classes=evalset.classes, queries=class_queries(evalset.classes),
        expanded_queries=class_queries(evalset.classes, expand=True) if cfg.expand else None,
        conditions=conditions, data_files={str(p): file_sha256(p) for p in dict.fromkeys(files)},
        config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        versions=versions(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=cfg.command,
    )


