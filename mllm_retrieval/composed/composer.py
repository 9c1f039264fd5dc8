"""Learned composition: a TIRG-style gated residual fusion of two sentence embeddings.

The seed systems (TIRG, DenseBert4Ret, MQIRTN) fuse an image feature with a text feature. Our images are
text, so the composer fuses the reference image's text embedding r with the modification's embedding m:

    x = [r; m];  f = w_g * sigmoid(G(x)) * r + w_r * R(x);  query = f / |f|

G and R are two-layer MLPs, w_g and w_r learned scalars. The query lives in the embedder's own space, so it
is compared with the gallery's stored sentence vectors directly (no gallery-side projection: a library's
semantic index can be searched with it as is). Training minimises a batch-contrastive (InfoNCE) loss
between each query and its target's embedding, the other targets of the batch being the negatives; batches
hold one group (a FashionIQ category) so that the negatives are of the same kind. A held-out part of the
training queries picks the epoch (never the evaluation split).

Training (both kinds) is in training.py, out of the search path. `EncoderComposer` is the stronger
variant: the sentence encoder itself is fine-tuned end to end, the query being one text, "reference [SEP]
modification" (so attention relates the two), the target its caption, with the same loss. It is saved as
a sentence-transformers folder that also embeds the gallery (a library searched with it is embedded with
it). `load_composer` opens either kind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MllmretError

FORMAT = "mllmret-composer/1"


class ComposerError(MllmretError):
    """A composer checkpoint is missing, malformed, or made for another embedder."""


@dataclass(frozen=True)
class Triplet:
    """One training query: reference text + modification -> target text (all plain text)."""

    reference: str
    modification: str
    target: str
    group: str = ""  # negatives come from the same group (e.g. a FashionIQ category)
    alternatives: tuple[str, ...] = ()  # other phrasings of the modification, sampled in training


def tirg_module(dim: int, hidden: int, dropout: float):
    """The torch module (built lazily so that importing this file does not import torch)."""
    import torch
    from torch import nn

    class TIRG(nn.Module):
        """Gated residual fusion of a reference vector and a modification vector."""

        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
            self.res = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, dim))
            self.w_gate = nn.Parameter(torch.tensor(1.0))
            self.w_res = nn.Parameter(torch.tensor(0.1))
            self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

        def forward(self, ref, mod):
            x = torch.cat([ref, mod], dim=-1)
            f = self.w_gate * torch.sigmoid(self.gate(x)) * ref + self.w_res * self.res(x)
            return nn.functional.normalize(f, dim=-1)

    return TIRG()


class LearnedComposer:
    """A trained TIRG head and the embedder it was trained on; composes query vectors."""

    def __init__(self, module, embedder: str, dim: int, hidden: int, meta: dict | None = None) -> None:
        self.module, self.embedder, self.dim, self.hidden = module.eval(), embedder, dim, hidden
        self.meta = meta or {}

    def compose_vectors(self, ref: np.ndarray, mod: np.ndarray) -> np.ndarray:
        """Unit query vectors, shape (n, dim), for reference and modification vectors of shape (n, dim)."""
        import torch

        ref, mod = np.atleast_2d(ref), np.atleast_2d(mod)
        if ref.shape[-1] != self.dim or mod.shape[-1] != self.dim:
            raise ComposerError(f"the composer takes {self.dim}-dim vectors, not {ref.shape[-1]}: "
                                f"it was trained with the embedder {self.embedder!r}")
        with torch.inference_mode():
            out = self.module(torch.as_tensor(ref, dtype=torch.float32),
                              torch.as_tensor(mod, dtype=torch.float32))
        return out.numpy()

    kind = "tirg"

    def query_vectors(self, references: Sequence[str], modifications: Sequence[str], embed) -> np.ndarray:
        """Query vectors for texts; `embed(texts)` gives the (training) embedder's vectors."""
        return self.compose_vectors(embed(references), embed(modifications))

    def gallery_vectors(self, texts: Sequence[str], embed) -> np.ndarray:
        """The gallery's vectors: the embedder's own (the head composes in its space)."""
        return embed(texts)

    def query_vector(self, embedder, reference: str, modification: str) -> np.ndarray:
        """The composed query vector for one reference text and modification, with `embedder`."""
        self.check_embedder(getattr(embedder, "name", None))
        ref, mod = embedder.encode([reference or " ", modification or " "])
        return self.compose_vectors(ref[None], mod[None])[0]

    def check_embedder(self, name: str | None) -> None:
        """One-line error when the vectors would come from another embedder than the training one."""
        if name is not None and name != self.embedder:
            raise ComposerError(f"this composer was trained on {self.embedder!r} vectors, not {name!r}: "
                                "use the same --embedder or train a composer for it")

    def save(self, path: str | Path) -> Path:
        """A .safetensors file with the weights and the metadata (embedder, sizes, training report)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "embedder": self.embedder, "dim": str(self.dim), "hidden": str(self.hidden),
                "meta": json.dumps(self.meta)}
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.detach().contiguous() for k, v in self.module.state_dict().items()}, str(tmp),
                  metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LearnedComposer:
        """A composer saved by `save`; a one-line error for a missing or foreign file."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        if not path.is_file():
            raise ComposerError(f"no composer at {str(path)!r}: train one with `mllmret train-composer`")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ComposerError(f"cannot read composer {str(path)!r}: {e}") from None
        if meta.get("format") != FORMAT:
            raise ComposerError(f"{str(path)!r} is not an mllmret composer (format {meta.get('format')!r})")
        dim, hidden = int(meta["dim"]), int(meta["hidden"])
        module = tirg_module(dim, hidden, 0.0)
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise ComposerError(f"composer {str(path)!r} does not match its metadata: {e}") from None
        return cls(module, meta["embedder"], dim, hidden, json.loads(meta.get("meta") or "{}"))


ENCODER_META = "mllmret_composer.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class EncoderComposer:
    """A fine-tuned sentence encoder: query = encode("reference [SEP] modification"), gallery = encode."""

    kind = "encoder"

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        from ..search.embedding import Embedder

        self.path = Path(path).expanduser().resolve()
        try:
            self.meta = json.loads((self.path / ENCODER_META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ComposerError(f"{str(path)!r} is not an mllmret encoder composer: {e}") from None
        if self.meta.get("format") != FORMAT:
            raise ComposerError(f"{str(path)!r} is not an mllmret composer "
                                f"(format {self.meta.get('format')!r})")
        self.encoder = Embedder(str(self.path), device=device)
        self.embedder = self.encoder.name
        self.sep = self.meta.get("sep", " [SEP] ")

    def query_text(self, reference: str, modification: str) -> str:
        """The one text a query is encoded from."""
        return f"{reference}{self.sep}{modification}"

    def query_vectors(self, references: Sequence[str], modifications: Sequence[str],
                      embed=None) -> np.ndarray:
        """Query vectors, encoded by the fine-tuned encoder."""
        texts = [self.query_text(r, m) for r, m in zip(references, modifications, strict=True)]
        return self.encoder.encode(texts)

    def gallery_vectors(self, texts: Sequence[str], embed=None) -> np.ndarray:
        """The gallery's vectors, by the fine-tuned encoder (not the evaluation's embedder)."""
        return self.encoder.encode(list(texts))

    def query_vector(self, embedder, reference: str, modification: str) -> np.ndarray:
        """One query vector; `embedder` (the library's) must be this encoder."""
        name = getattr(embedder, "name", None)
        if name is not None and name != self.embedder:
            raise ComposerError(f"this composer ranks with its own encoder {self.embedder!r}, not {name!r}: "
                                "search with --embedder set to the composer folder")
        return self.query_vectors([reference or " "], [modification or " "])[0]


def load_composer(path: str | Path, device: str | None = None):
    """A LearnedComposer (.safetensors file) or an EncoderComposer (folder), by what `path` is."""
    path = Path(path).expanduser()
    if path.is_dir():
        return EncoderComposer(path, device)
    return LearnedComposer.load(path)
