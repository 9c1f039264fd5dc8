"""Composed image retrieval benchmarks as text: CIRR val, FashionIQ val, GeneCIS object tasks.

Every image is represented by a text from *another* captioner (BLIP-2 from DQU-CIR, the MLLM captions of
WeiMoCIR, or human COCO captions for GeneCIS), not by our M-LLM. The Gemini `keywords_in_mods_*` files
are never read: their keys contain the target image id.
File layout: ../shared/data/composed/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MllmretError

DATASETS = ("cirr", "fashioniq", "genecis")
CIRR_CAPTIONS = ("blip2", "mllm")
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
GENECIS_TASKS = ("change_object", "focus_object")


class BenchmarkError(MllmretError):
    """A composed-retrieval file is missing or malformed."""


@dataclass(frozen=True)
class CQuery:
    """One composed query: a reference image, a modification text and the correct target(s)."""

    qid: str
    reference: str
    modification: str
    targets: tuple[str, ...]
    candidates: tuple[str, ...] | None = None  # ranked set when not the whole gallery (GeneCIS)
    subset: tuple[str, ...] | None = None  # CIRR img_set.members minus the reference


@dataclass
class Split:
    """Queries over one gallery, with a text per image."""

    name: str
    gallery: list[str]
    texts: dict[str, str]
    queries: list[CQuery]
    exclude_reference: bool  # the reference image is taken out of the ranked gallery
    files: list[Path] = field(default_factory=list)


@dataclass
class Benchmark:
    """A dataset as one or more splits; metrics are averaged over splits where the protocol says so."""

    dataset: str
    description: str
    text_source: str
    splits: list[Split]
    ks: tuple[int, ...]
    subset_ks: tuple[int, ...] = ()
    average_splits: bool = False


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkError(f"{str(path)!r} not found (see ../shared/data/composed/README.md)") from None
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"cannot read {str(path)!r}: {e}") from None


def default_root() -> Path | None:
    """../shared/data/composed when it exists."""
    from ..evaluation.datasets import default_data_root

    base = default_data_root()
    return base / "composed" if base is not None and (base / "composed").is_dir() else None


def _composed_root(root: Path | None) -> Path:
    """The composed-data folder: `root` itself, or its composed/ subfolder (../shared/data works too)."""
    root = root or default_root()
    if root is None:
        raise BenchmarkError("no composed data: give --data-dir (the folder of ../shared/data/composed)")
    return root / "composed" if (root / "composed").is_dir() else root


def load_cirr(root: Path, captions: str = "blip2") -> Benchmark:
    """CIRR val: cap.rc2.val.json queries over the split.rc2.val.json gallery."""
    if captions not in CIRR_CAPTIONS:
        raise BenchmarkError(f"--captions for CIRR is one of {', '.join(CIRR_CAPTIONS)}, not {captions!r}")
    cap_file, split_file = root / "cirr" / "cap.rc2.val.json", root / "cirr" / "split.rc2.val.json"
    queries_raw, split = _read(cap_file), _read(split_file)
    if captions == "blip2":
        text_file = root / "cirr" / "dqu_cir_blip2" / "image_captions_cirr_val.json"
        texts = {k: str(v) for k, v in _read(text_file).items()}
        source = "BLIP-2 opt-2.7b captions (DQU-CIR)"
    else:
        text_file = root / "cirr" / "weimocir" / "cirr_labeled_images_cir_cleaned.json"
        texts = {r["candidate"]: " ".join(r.get("captions") or []) for r in _read(text_file)}
        source = "MLLM captions of WeiMoCIR (MLLM not named), all captions of an image joined"
    gallery = list(split)
    queries = [
        CQuery(qid=str(q["pairid"]), reference=q["reference"], modification=q["caption"],
               targets=(q["target_hard"],),
               subset=tuple(m for m in q["img_set"]["members"] if m != q["reference"]))
        for q in queries_raw
    ]
    s = Split("val", gallery, texts, queries, exclude_reference=True, files=[cap_file, split_file, text_file])
    return Benchmark("cirr", f"CIRR val ({len(queries)} queries, {len(gallery)} gallery images)", source, [s],
                     ks=(1, 5, 10, 50), subset_ks=(1, 2, 3))


def load_fashioniq(root: Path, categories=FASHIONIQ_CATEGORIES) -> Benchmark:
    """FashionIQ val per category; the two modification sentences joined by " and "."""
    splits = []
    for cat in categories:
        cap_file = root / "fashioniq" / "official" / f"cap.{cat}.val.json"
        split_file = root / "fashioniq" / "official" / f"split.{cat}.val.json"
        text_file = root / "fashioniq" / "dqu_cir_blip2" / f"image_captions_{cat}_val.json"
        texts = {k: str(v) for k, v in _read(text_file).items()}
        queries = [
            CQuery(qid=f"{cat}-{i}", reference=q["candidate"], modification=" and ".join(q["captions"]),
                   targets=(q["target"],))
            for i, q in enumerate(_read(cap_file))
        ]
        splits.append(Split(cat, list(_read(split_file)), texts, queries, exclude_reference=False,
                            files=[cap_file, split_file, text_file]))
    n = sum(len(s.queries) for s in splits)
    return Benchmark("fashioniq", f"FashionIQ val ({n} queries; dress, shirt, toptee galleries)",
                     "BLIP-2 opt-2.7b captions (DQU-CIR)", splits, ks=(10, 50), average_splits=True)


def load_genecis(root: Path, tasks=GENECIS_TASKS) -> Benchmark:
    """GeneCIS object tasks: 15 candidates per query (the target + 14 gallery images); proxy texts."""
    text_file = root / "genecis" / "coco_val2017_human_captions_genecis_subset.json"
    texts = {str(k): " ".join(v) if isinstance(v, list) else str(v) for k, v in _read(text_file).items()}
    splits = []
    for task in tasks:
        task_file = root / "genecis" / f"{task}.json"
        queries, images = [], set()
        for i, q in enumerate(_read(task_file)):
            target = str(q["target"]["val_image_id"])
            cands = (target, *(str(g["val_image_id"]) for g in q["gallery"]))
            images.update(cands)
            queries.append(CQuery(qid=f"{task}-{i}", reference=str(q["reference"]["val_image_id"]),
                                  modification=q["condition"], targets=(target,), candidates=cands))
        splits.append(Split(task, sorted(images), texts, queries, exclude_reference=True,
                            files=[task_file, text_file]))
    n = sum(len(s.queries) for s in splits)
    return Benchmark("genecis", f"GeneCIS change_object + focus_object ({n} queries, 15 candidates each)",
                     "human COCO captions (a PROXY: not VLM text), all captions of an image joined", splits,
                     ks=(1, 2, 3), average_splits=True)


def load(dataset: str, root: Path | None = None, captions: str | None = None) -> Benchmark:
    """One of DATASETS from `root` (default ../shared/data/composed)."""
    root = _composed_root(root)
    if dataset == "cirr":
        return load_cirr(root, captions or "blip2")
    if captions not in (None, "blip2") and dataset == "fashioniq":
        raise BenchmarkError("FashionIQ has BLIP-2 captions only (--captions blip2)")
    if dataset == "fashioniq":
        return load_fashioniq(root)
    if dataset == "genecis":
        return load_genecis(root)
    raise BenchmarkError(f"--dataset of eval-composed is one of {', '.join(DATASETS)}, not {dataset!r}")


def fashioniq_triplets(root: Path | None = None, split: str = "train",
                       categories=FASHIONIQ_CATEGORIES) -> tuple[list, list[Path]]:
    """FashionIQ queries of a split as composer.Triplet (BLIP-2 captions as image text), and the files read.

    The modification is the two sentences joined by " and " (as evaluation reads them); each sentence alone
    is an alternative phrasing for training. Queries whose reference or target has no caption are skipped."""
    from .composer import Triplet

    root = _composed_root(root)
    out, files = [], []
    for cat in categories:
        cap_file = root / "fashioniq" / "official" / f"cap.{cat}.{split}.json"
        text_file = root / "fashioniq" / "dqu_cir_blip2" / f"image_captions_{cat}_{split}.json"
        texts, queries = _read(text_file), _read(cap_file)
        files += [cap_file, text_file]
        for q in queries:
            ref, tgt = texts.get(q.get("candidate")), texts.get(q.get("target"))
            sentences = tuple(s.strip() for s in q.get("captions") or () if s and s.strip())
            if ref and tgt and sentences:
                out.append(Triplet(str(ref), " and ".join(sentences), str(tgt), cat,
                                   sentences if len(sentences) > 1 else ()))
    return out, files
