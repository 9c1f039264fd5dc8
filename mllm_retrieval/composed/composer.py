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

`EncoderComposer` is the stronger variant: the sentence encoder itself is fine-tuned end to end, the
query being one text, "reference [SEP] modification" (so attention relates the two), the target its
caption, with the same loss. It is saved as a sentence-transformers folder that also embeds the gallery
(a library searched with it is embedded with it). `load_composer` opens either kind.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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


@dataclass
class TrainReport:
    """What training did: losses and held-out recall per epoch, the epoch kept, timings."""

    n_train: int
    n_holdout: int
    losses: list[float] = field(default_factory=list)
    holdout_r10: list[float] = field(default_factory=list)
    baseline_r10: float = 0.0  # held-out R@10 of the un-learned query normalize(r + m)
    best_epoch: int = 0
    embed_seconds: float = 0.0
    train_seconds: float = 0.0


def _module(dim: int, hidden: int, dropout: float):
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
        module = _module(dim, hidden, 0.0)
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise ComposerError(f"composer {str(path)!r} does not match its metadata: {e}") from None
        return cls(module, meta["embedder"], dim, hidden, json.loads(meta.get("meta") or "{}"))


def _recall_at(q: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Mean R@k of query i against target i among all the targets (ties at their expected value)."""
    s = q @ targets.T
    own = s[np.arange(len(q)), np.arange(len(q))][:, None]
    higher = (s > own + 1e-6).sum(1)
    tied = np.maximum((np.abs(s - own) <= 1e-6).sum(1), 1)
    return float(np.mean(np.clip((k - higher) / tied, 0.0, 1.0)))


def _holdout_split(triplets: Sequence[Triplet], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices for training and for the held-out check, split by reference text (no leak between them)."""
    def bucket(t: Triplet) -> float:
        h = hashlib.sha256(f"{seed}:{t.reference}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    held = [i for i, t in enumerate(triplets) if bucket(t) < fraction]
    held_set = set(held)
    return [i for i in range(len(triplets)) if i not in held_set], held


def train_composer(triplets: Sequence[Triplet], embedder, epochs: int = 12, batch_size: int = 256,
                   lr: float = 1e-3, hidden: int = 512, dropout: float = 0.1, holdout: float = 0.1,
                   seed: int = 0, progress: bool = True) -> tuple[LearnedComposer, TrainReport]:
    """Train a composer on text triplets with `embedder` (an embedding.Embedder) vectors; CPU minutes."""
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    if len(triplets) < 2:
        raise ComposerError(f"need at least 2 training queries, got {len(triplets)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_idx, held_idx = _holdout_split(triplets, holdout, seed) if holdout > 0 else (
        list(range(len(triplets))), [])
    if not train_idx:
        train_idx, held_idx = held_idx, []
    start = time.perf_counter()
    texts: dict[str, int] = {}
    for t in triplets:
        for s in (t.reference, t.modification, t.target, *t.alternatives):
            texts.setdefault(s or " ", len(texts))
    vecs = torch.as_tensor(np.asarray(embedder.encode(list(texts), progress=progress), dtype=np.float32))
    embed_seconds = time.perf_counter() - start
    ref = vecs[[texts[t.reference or " "] for t in triplets]]
    tgt = vecs[[texts[t.target or " "] for t in triplets]]
    mods = [[texts[s or " "] for s in (t.modification, *t.alternatives)] for t in triplets]
    dim = int(vecs.shape[1])
    module = _module(dim, hidden, dropout)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    report = TrainReport(n_train=len(train_idx), n_holdout=len(held_idx), embed_seconds=embed_seconds)
    held = np.asarray(held_idx, dtype=np.int64)
    if len(held):
        m0 = vecs[[mods[i][0] for i in held]]
        report.baseline_r10 = _recall_at(F.normalize(ref[held] + m0, dim=-1).numpy(), tgt[held].numpy())
    groups: dict[str, list[int]] = {}
    for i in train_idx:
        groups.setdefault(triplets[i].group, []).append(i)
    best_state, best = None, -1.0
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="training", unit="epoch", disable=not progress):
        batches = []
        for members in groups.values():
            order = rng.permutation(members)
            batches += [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(batches)
        module.train()
        total = 0.0
        for b in batches:
            if len(b) < 2:
                continue
            m = vecs[[mods[i][rng.integers(len(mods[i]))] for i in b]]
            q = module(ref[b], m)
            logits = module.logit_scale.exp().clamp(max=100) * q @ F.normalize(tgt[b], dim=-1).T
            loss = F.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        report.losses.append(total / max(len(train_idx), 1))
        module.eval()
        if len(held):
            with torch.inference_mode():
                q = module(ref[held], vecs[[mods[i][0] for i in held]]).numpy()
            score = _recall_at(q, tgt[held].numpy())
            report.holdout_r10.append(score)
        else:
            score = -report.losses[-1]
        if score > best:
            best, report.best_epoch = score, epoch + 1
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    report.train_seconds = time.perf_counter() - start
    module.load_state_dict(best_state)
    composer = LearnedComposer(module, getattr(embedder, "name", "unknown"), dim, hidden,
                               {"report": asdict(report), "epochs": epochs, "batch_size": batch_size,
                                "lr": lr, "seed": seed, "n_triplets": len(triplets)})
    return composer, report


ENCODER_META = "mllmret_composer.json"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


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


def _warmup_decay(step: int, total: int, warmup: float = 0.05) -> float:
    """Learning-rate factor: linear warm-up over the first 5% of the steps, then linear decay to 0."""
    return min(1.0, (step + 1) / max(1.0, warmup * total)) * max(0.0, 1.0 - step / max(total, 1))


def _same_text(texts: Sequence[str]):
    """Bool matrix, True where texts i and j (i != j) are equal: such in-batch 'negatives' are masked."""
    import torch

    ids = {t: n for n, t in enumerate(dict.fromkeys(texts))}
    v = torch.tensor([ids[t] for t in texts])
    return (v[:, None] == v[None, :]) & ~torch.eye(len(texts), dtype=torch.bool)


def finetune_encoder(triplets: Sequence[Triplet], base: str | None, out: str | Path, epochs: int = 4,
                     batch_size: int = 128, lr: float = 5e-5, holdout: float = 0.1, seed: int = 0,
                     progress: bool = True, max_length: int = 64,
                     trained_on: str | None = None) -> tuple[EncoderComposer, TrainReport]:
    """Fine-tune a local sentence-transformers folder (mean pooling) on triplets; save it under `out`."""
    import shutil

    import torch
    from torch.nn import functional as F
    from tqdm import tqdm
    from transformers import AutoModel, AutoTokenizer

    from ..search.embedding import resolve_model

    if len(triplets) < 2:
        raise ComposerError(f"need at least 2 training queries, got {len(triplets)}")
    source, _ = resolve_model(base)
    folder = Path(source)
    if not (folder / "modules.json").is_file():
        raise ComposerError(f"--embedder {base!r} is not a local sentence-transformers folder to fine-tune")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder)
    sep = f" {tokenizer.sep_token} " if tokenizer.sep_token else " ; "

    def encode(texts: list[str]):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    def held_r10(idx: np.ndarray) -> float:
        model.eval()
        queries = [f"{triplets[i].reference}{sep}{triplets[i].modification}" for i in idx]
        targets = [triplets[i].target for i in idx]
        with torch.inference_mode():
            q = torch.cat([encode(queries[j:j + 256]) for j in range(0, len(idx), 256)]).numpy()
            t = torch.cat([encode(targets[j:j + 256]) for j in range(0, len(idx), 256)]).numpy()
        model.train()
        return _recall_at(q, t)

    train_idx, held_idx = _holdout_split(triplets, holdout, seed) if holdout > 0 else (
        list(range(len(triplets))), [])
    if not train_idx:
        train_idx, held_idx = held_idx, []
    held = np.asarray(held_idx, dtype=np.int64)
    report = TrainReport(n_train=len(train_idx), n_holdout=len(held_idx))
    scale = torch.nn.Parameter(torch.tensor(float(np.log(20.0))))
    opt = torch.optim.AdamW([*model.parameters(), scale], lr=lr, weight_decay=0.01)
    groups: dict[str, list[int]] = {}
    for i in train_idx:
        groups.setdefault(triplets[i].group, []).append(i)
    steps = epochs * sum(-(-len(m) // batch_size) for m in groups.values())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup_decay(s, steps))
    start = time.perf_counter()
    if len(held):
        report.baseline_r10 = held_r10(held)
    best = report.baseline_r10 if len(held) else -np.inf
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # kept if no epoch beats it
    model.train()
    for epoch in range(epochs):
        batches = []
        for members in groups.values():
            order = rng.permutation(members)
            batches += [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(batches)
        total = 0.0
        for b in tqdm(batches, desc=f"fine-tuning, epoch {epoch + 1}/{epochs}", unit="batch",
                      disable=not progress):
            if len(b) < 2:
                continue
            texts = []
            for i in b:
                phrasings = (triplets[i].modification, *triplets[i].alternatives)
                texts.append(f"{triplets[i].reference}{sep}{phrasings[rng.integers(len(phrasings))]}")
            q = encode(texts)
            targets = [triplets[i].target for i in b]
            logits = (scale.exp().clamp(max=100) * q @ encode(targets).T).masked_fill(
                _same_text(targets), -1e4)  # another query's target with this very caption is no negative
            loss = F.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        report.losses.append(total / max(len(train_idx), 1))
        score = held_r10(held) if len(held) else -report.losses[-1]
        if len(held):
            report.holdout_r10.append(score)
        if score > best:
            best, report.best_epoch = score, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report.train_seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    out = Path(out).expanduser()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns(*_WEIGHTS, "onnx", "openvino", "*.onnx"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    meta = {"format": FORMAT, "kind": "encoder", "base": str(base or "all-MiniLM-L6-v2"), "sep": sep,
            "report": asdict(report), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "n_triplets": len(triplets), "trained_on": trained_on}
    (tmp / ENCODER_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return EncoderComposer(out), report
