"""A tiny randomly initialised CLIP (no hub, no real weights), saved with a working CLIPProcessor."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

CORPUS = [
    "a photo of a cat", "a photo of a dog on a bridge", "a photo of a red car",
    "person, tree, sky, water, boat, table, chair, pigeon, bicycle, train, zebra",
]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIPTokenizer's own pre-tokenizer split, so the trained merges meet the same words at load time.
CLIP_SPLIT = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def _clip_tokenizer(folder: Path):
    """Train a small byte-level BPE with CLIP's ``</w>`` suffix; load it as CLIPTokenizer from vocab/merges.

    Every byte character, bare and with ``</w>``, is in the vocabulary, so any text tokenises without
    unknown tokens.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=400, end_of_word_suffix="</w>", special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 10, trainer)
    trained = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(trained["vocab"])
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        for token in (ch, ch + "</w>"):
            vocab.setdefault(token, len(vocab))
    merges = [m if isinstance(m, str) else " ".join(m) for m in trained["merges"]]
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(
        folder, bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS, model_max_length=77
    )


def build_tiny_clip(out: Path, seed: int = 0) -> Path:
    """A CLIPModel with 2-layer, 32-wide text and vision towers (32x32 images, 8x8 patches), saved to out."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _clip_tokenizer(Path(tmp))
    text = {
        "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 77, "projection_dim": 32,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 8, "projection_dim": 32,
    }
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
