"""A BERT sentence encoder (transformer + mean pooling + normalisation) run with numpy alone.

It embeds a query without importing torch or transformers: the weights are read straight from the model
folder's `model.safetensors` (memory-mapped: only the rows a text uses are paged in) and the text is
tokenised by the `tokenizers` library from `tokenizer.json`. It gives the vectors sentence-transformers
gives for models made of exactly those modules with a BERT transformer (all-MiniLM-L6-v2, the packaged
default, is one): cosine >= 0.999 is tested, in practice they agree to about 1e-6.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .blas import one_thread

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


class NumpyBertEncoder:
    """Mean-pooled, L2-normalised BERT embeddings with numpy; `encode` as MeanPoolEncoder's."""

    def __init__(self, folder: Path, config: dict, max_length: int) -> None:
        from tokenizers import Tokenizer

        self.weights = read_safetensors(folder / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in self.weights else ""
        self.w = {k[len(prefix):]: v for k, v in self.weights.items() if k.startswith(prefix)}
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_length = min(max_length, int(config.get("max_position_embeddings", 512)))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    @classmethod
    def load(cls, source: str) -> NumpyBertEncoder | None:
        """The encoder for a local sentence-transformers folder of such a model, else None."""
        folder = Path(source)
        st_config = mean_pool_config(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return None
        plain = (st_config is not None and config.get("model_type") == "bert"
                 and config.get("hidden_act") == "gelu"
                 and config.get("position_embedding_type", "absolute") == "absolute")
        files = ("model.safetensors", "tokenizer.json")
        if not plain or not all((folder / f).is_file() for f in files):
            return None
        try:
            return cls(folder, config, int(st_config.get("max_seq_length") or 512))
        except (OSError, ValueError, KeyError) as e:
            from .embedding import EmbedderError

            raise EmbedderError(f"cannot load embedder {source!r}: {e}") from None

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False,
               **_) -> np.ndarray:
        """Unit-length mean-pooled embeddings, shape (len(texts), dim); similar lengths batched together."""
        hidden = self.w["embeddings.word_embeddings.weight"].shape[1]
        out = np.zeros((len(texts), hidden), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.float32)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n], mask[r, :n] = encodings[i].ids, 1.0
            with one_thread():
                out[rows] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        b, n = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        heads = self.heads
        size = x.shape[-1] // heads
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(t: np.ndarray) -> np.ndarray:
                return np.ascontiguousarray(t.reshape(b, n, heads, size).transpose(0, 2, 1, 3))

            q = split(_linear(x, w, p + "attention.self.query"))
            k = split(_linear(x, w, p + "attention.self.key"))
            v = split(_linear(x, w, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(size)) + bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b, n, heads * size)
            norm = p + "attention.output.LayerNorm"
            x = _layer_norm(_linear(ctx, w, p + "attention.output.dense") + x, w[norm + ".weight"],
                            w[norm + ".bias"], self.eps)
            h = _gelu(_linear(x, w, p + "intermediate.dense"))
            x = _layer_norm(_linear(h, w, p + "output.dense") + x, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], self.eps)
        m = mask[..., None]
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def mean_pool_config(folder: Path) -> dict | None:
    """The sentence-transformers config of a folder holding exactly Transformer + mean pooling + Normalize
    (no extra lower-casing), else None: the models run here and by embedding.MeanPoolEncoder."""
    try:
        listed = json.loads((folder / "modules.json").read_text())
        modules = [m["type"].rsplit(".", 1)[-1] for m in listed]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        config = json.loads((folder / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modules != ["Transformer", "Pooling", "Normalize"] or modes != {"pooling_mode_mean_tokens"}:
        return None
    return None if config.get("do_lower_case") else config


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    """x @ W.T + b as one 2-D product (a stacked 3-D one skips BLAS in numpy: ~10x slower)."""
    flat = x.reshape(-1, x.shape[-1]) @ w[name + ".weight"].T + w[name + ".bias"]
    return flat.reshape(*x.shape[:-1], flat.shape[-1])


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT's "gelu"; erf by Abramowitz-Stegun 7.1.26 (abs error < 1.5e-7)."""
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return np.float32(0.5) * x * (1.0 + erf)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file as read-only numpy views of a memory map (float32/16, int64)."""
    with path.open("rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path.name}: tensor {name} has dtype {info['dtype']}, not supported here")
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize,
                            offset=8 + size + begin)
        out[name] = arr.reshape(info["shape"])
    return {k: v if v.dtype != np.float16 else v.astype(np.float32) for k, v in out.items()}
