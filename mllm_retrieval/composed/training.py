"""Training the learned composers (TIRG head, fine-tuned encoder) on text triplets: out of the search path.

Both share the hold-out split (by reference text, so nothing leaks), per-group batches and keeping the best
epoch's weights, and minimise a batch-contrastive (InfoNCE) loss between queries and their targets: the
TIRG head in a small loop of its own over precomputed vectors, the encoder with sentence-transformers'
trainer (MultipleNegativesRankingLoss, no-duplicates batches), which needs `datasets`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .composer import (
    ENCODER_META,
    FORMAT,
    WEIGHTS,
    ComposerError,
    EncoderComposer,
    LearnedComposer,
    Triplet,
    tirg_module,
)


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


def recall_at(q: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Mean R@k of query i against target i among all the targets (ties at their expected value)."""
    s = q @ targets.T
    own = s[np.arange(len(q)), np.arange(len(q))][:, None]
    higher = (s > own + 1e-6).sum(1)
    tied = np.maximum((np.abs(s - own) <= 1e-6).sum(1), 1)
    return float(np.mean(np.clip((k - higher) / tied, 0.0, 1.0)))


def holdout_split(triplets: Sequence[Triplet], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices for training and for the held-out check, split by reference text (no leak between them)."""
    def bucket(t: Triplet) -> float:
        h = hashlib.sha256(f"{seed}:{t.reference}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    held = [i for i, t in enumerate(triplets) if bucket(t) < fraction]
    held_set = set(held)
    return [i for i in range(len(triplets)) if i not in held_set], held


def split(triplets: Sequence[Triplet], holdout: float, seed: int) -> tuple[list[int], np.ndarray]:
    """(training indices, held-out indices); everything trains when nothing would be left to train on."""
    train_idx, held_idx = holdout_split(triplets, holdout, seed) if holdout > 0 else (
        list(range(len(triplets))), [])
    if not train_idx:
        train_idx, held_idx = held_idx, []
    return train_idx, np.asarray(held_idx, dtype=np.int64)


def by_group(triplets: Sequence[Triplet], indices: Sequence[int]) -> dict[str, list[int]]:
    """Training indices per group: a batch holds one group, so its negatives are of the same kind."""
    groups: dict[str, list[int]] = {}
    for i in indices:
        groups.setdefault(triplets[i].group, []).append(i)
    return groups


def epoch_batches(groups: dict[str, list[int]], batch_size: int, rng: np.random.Generator) -> list:
    """One epoch's batches: each group shuffled and cut, then the batches shuffled."""
    batches = []
    for members in groups.values():
        order = rng.permutation(members)
        batches += [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


class Best:
    """The best epoch so far by held-out score, and a copy of the weights it had."""

    def __init__(self, score: float, module=None) -> None:
        self.score, self.epoch = score, 0
        self.state = None if module is None else _copy(module)

    def offer(self, score: float, epoch: int, module) -> None:
        """Keep this epoch's weights if it scores better than every earlier one."""
        if score > self.score:
            self.score, self.epoch, self.state = score, epoch, _copy(module)


def _copy(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


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
    train_idx, held = split(triplets, holdout, seed)
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
    module = tirg_module(dim, hidden, dropout)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    report = TrainReport(n_train=len(train_idx), n_holdout=len(held), embed_seconds=embed_seconds)
    if len(held):
        m0 = vecs[[mods[i][0] for i in held]]
        report.baseline_r10 = recall_at(F.normalize(ref[held] + m0, dim=-1).numpy(), tgt[held].numpy())
    groups = by_group(triplets, train_idx)
    best = Best(-np.inf)  # the first epoch is kept even when its loss (no hold-out) is above 1
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="training", unit="epoch", disable=not progress):
        batches = epoch_batches(groups, batch_size, rng)
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
            score = recall_at(q, tgt[held].numpy())
            report.holdout_r10.append(score)
        else:
            score = -report.losses[-1]
        best.offer(score, epoch + 1, module)
    report.train_seconds, report.best_epoch = time.perf_counter() - start, best.epoch
    module.load_state_dict(best.state)
    composer = LearnedComposer(module, getattr(embedder, "name", "unknown"), dim, hidden,
                               {"report": asdict(report), "epochs": epochs, "batch_size": batch_size,
                                "lr": lr, "seed": seed, "n_triplets": len(triplets)})
    return composer, report


def query_texts(triplet: Triplet, sep: str) -> list[str]:
    """The query texts of a triplet: "reference [SEP] modification", then one per alternative phrasing."""
    return [f"{triplet.reference}{sep}{m}" for m in (triplet.modification, *triplet.alternatives)]


def group_datasets(triplets: Sequence[Triplet], groups: dict[str, list[int]], sep: str, seed: int):
    """One `datasets.Dataset` per group (a batch then holds one group), each row (query phrasings, target).

    A row is read with one of its phrasings drawn at random, so each epoch samples the phrasings anew."""
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(seed)

    def draw(batch: dict) -> dict:
        return {"anchor": [p[rng.integers(len(p))] for p in batch["anchor"]], "positive": batch["positive"]}

    return DatasetDict({g: Dataset.from_dict({
        "anchor": [query_texts(triplets[i], sep) for i in idx],
        "positive": [triplets[i].target for i in idx]}).with_transform(draw) for g, idx in groups.items()})


def finetune_encoder(triplets: Sequence[Triplet], base: str | None, out: str | Path, epochs: int = 4,
                     batch_size: int = 128, lr: float = 5e-5, holdout: float = 0.1, seed: int = 0,
                     progress: bool = True, max_length: int = 64,
                     trained_on: str | None = None) -> tuple[EncoderComposer, TrainReport]:
    """Fine-tune a local sentence-transformers folder on triplets with its trainer; save it under `out`.

    MultipleNegativesRankingLoss (in-batch InfoNCE, scale 20) with the no-duplicates batch sampler, so that
    another query's target with the very same caption is never in the batch as a negative; one dataset per
    group, so a batch holds one group; the epoch kept is the best on the held-out queries (or none)."""
    import math
    import shutil
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    from tqdm import tqdm
    from transformers import PrinterCallback, TrainerCallback

    from ..search.embedding import resolve_model

    try:
        import datasets  # noqa: F401  (the trainer's data format)
    except ImportError:
        raise ComposerError("fine-tuning the encoder needs `datasets`: pip install -e '.[eval]'") from None
    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    if len(triplets) < 2:
        raise ComposerError(f"need at least 2 training queries, got {len(triplets)}")
    source, _ = resolve_model(base)
    folder = Path(source)
    if not (folder / "modules.json").is_file():
        raise ComposerError(f"--embedder {base!r} is not a local sentence-transformers folder to fine-tune")
    torch.manual_seed(seed)
    model = SentenceTransformer(str(folder))
    model.max_seq_length = max_length
    tokenizer = model[0].tokenizer
    sep = f" {tokenizer.sep_token} " if tokenizer.sep_token else " ; "
    train_idx, held = split(triplets, holdout, seed)
    report = TrainReport(n_train=len(train_idx), n_holdout=len(held))
    held_queries = [query_texts(triplets[i], sep)[0] for i in held]
    held_targets = [triplets[i].target for i in held]

    def held_r10() -> float:
        kw = {"batch_size": 256, "convert_to_numpy": True, "normalize_embeddings": True,
              "show_progress_bar": False}
        return recall_at(model.encode(held_queries, **kw), model.encode(held_targets, **kw))

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict) -> None:
            """None: the saved folder is the base model's with new weights, no model card to fill."""

    class Epochs(TrainerCallback):
        """Records each epoch's mean loss and held-out R@10, and keeps the best epoch's weights."""

        def on_log(self, args, state, control, logs=None, **kwargs):  # once an epoch, after its end
            if logs and "loss" in logs:
                report.losses.append(float(logs["loss"]))
                if not len(held):  # no hold-out: the epoch of the lowest loss
                    best.offer(-report.losses[-1], round(state.epoch or 0), model)

        def on_epoch_end(self, args, state, control, **kwargs):
            if len(held):
                report.holdout_r10.append(held_r10())
                best.offer(report.holdout_r10[-1], round(state.epoch or 0), model)
                if progress:
                    tqdm.write(f"epoch {round(state.epoch or 0)}: held-out R@10 {report.holdout_r10[-1]:.4f}")

    start = time.perf_counter()
    if len(held):
        report.baseline_r10 = held_r10()
    best = Best(report.baseline_r10, model) if len(held) else Best(-np.inf)  # kept if no epoch beats it
    groups = by_group(triplets, train_idx)
    steps = epochs * sum(math.ceil(len(m) / batch_size) for m in groups.values())
    with tempfile.TemporaryDirectory(prefix="mllmret-finetune-") as tmpdir:
        args = Arguments(  # AdamW, linear warm-up over 5% of the steps then linear decay to 0
            output_dir=tmpdir, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            learning_rate=lr, weight_decay=0.01, warmup_steps=math.ceil(0.05 * steps),
            lr_scheduler_type="linear", seed=seed, batch_sampler="no_duplicates", save_strategy="no",
            max_grad_norm=0.0, logging_strategy="epoch", report_to="none", disable_tqdm=not progress,
            dataloader_pin_memory=False)  # no gradient clipping, as the loop this trainer replaced
        trainer = Trainer(model=model, args=args, loss=MultipleNegativesRankingLoss(model, scale=20.0),
                          train_dataset=group_datasets(triplets, groups, sep, seed), callbacks=[Epochs()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    report.train_seconds, report.best_epoch = time.perf_counter() - start, best.epoch
    model.load_state_dict(best.state)
    out = Path(out).expanduser()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns(*WEIGHTS, "onnx", "openvino", "*.onnx"))
    model[0].auto_model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    meta = {"format": FORMAT, "kind": "encoder", "base": str(base or "all-MiniLM-L6-v2"), "sep": sep,
            "report": asdict(report), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "n_triplets": len(triplets), "trained_on": trained_on}
    (tmp / ENCODER_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return EncoderComposer(out), report
