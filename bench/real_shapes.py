"""Models of real published shapes with random weights, built here (no download), for cost benchmarks.

Each builder writes a folder that `--model` loads like a hub checkpoint: the architecture and sizes of the
published config.json, the published processor settings, a tokenizer trained on the spot (same special
tokens as the real one, a smaller vocabulary for text; the model keeps the real vocabulary size, so the
output layer costs what it really costs). Random weights: these folders measure cost, never quality.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_archs import IDEFICS3_CHAT_TEMPLATE, train_bpe  # noqa: E402

# Idefics3's processor writes these as plain text; the real tokenizers have each as one added token.
IDEFICS3_SPECIALS = (
    ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
     "<global-img>"]
    + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
)


def _shape(vision: tuple, text: tuple, scale_factor: int, longest_edge: int, vocab: int,
           rope_theta: float, max_positions: int) -> dict[str, Any]:
    """vision/text: (hidden, intermediate, layers, heads, ...) as in the published config.json."""
    hidden, inter, layers, heads, image_size, patch = vision
    t_hidden, t_inter, t_layers, t_heads, kv_heads = text
    return {
        "vision": {"hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
                   "num_attention_heads": heads, "image_size": image_size, "patch_size": patch},
        "text": {"hidden_size": t_hidden, "intermediate_size": t_inter, "num_hidden_layers": t_layers,
                 "num_attention_heads": t_heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
                 "max_position_embeddings": max_positions, "rope_theta": rope_theta, "rms_norm_eps": 1e-5},
        "scale_factor": scale_factor, "longest_edge": longest_edge, "max_image_size": image_size,
        "tie_word_embeddings": False,
    }


SHAPES = {
    # HuggingFaceTB/SmolVLM-256M-Instruct: SigLIP-B/16-512 + SmolLM2-135M, pixel shuffle 4
    "smolvlm-256m": _shape((768, 3072, 12, 12, 512, 16), (576, 1536, 30, 9, 3), 4, 2048, 49280, 1e5, 8192),
    # HuggingFaceTB/SmolVLM-Instruct (2.2B): SigLIP so400m-patch14-384 + SmolLM2-1.7B, pixel shuffle 3
    "smolvlm-2b": _shape((1152, 4304, 27, 16, 384, 14), (2048, 8192, 24, 32, 32), 3, 1536, 49155,
                         273768.0, 16384),
    # a small stand-in of the same family for CI smoke runs (seconds, not minutes)
    "smoke": _shape((64, 128, 2, 2, 64, 16), (64, 128, 2, 2, 1), 2, 256, 1024, 1e4, 2048),
}


def _corpus() -> list[str]:
    """English text to train the stand-in tokenizer: the prompts and the hand-written sample captions."""
    root = Path(__file__).resolve().parents[1]
    texts = [p.read_text() for p in sorted((root / "prompts").glob("*.txt"))]
    for line in (root / "mllm_retrieval" / "library" / "sample").glob("*.jsonl"):
        texts += [json.loads(x).get("text", "") for x in line.read_text().splitlines() if x.strip()]
    return texts


def _tokenizer(vocab_size: int) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(IDEFICS3_SPECIALS, vocab_size, _corpus() * 5),
        bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>", extra_special_tokens={"image_token": "<image>"},
    )


def build_idefics3(out: Path, shape: str = "smolvlm-256m", seed: int = 0) -> Path:
    """Save a random-weight Idefics3 (SmolVLM) of a published shape with its published processor."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        LlamaConfig,
    )

    spec = SHAPES[shape]
    if (out / "config.json").exists():
        return out
    tokenizer = _tokenizer(min(2000, spec["text"]["vocab_size"]))
    vision, sf = spec["vision"], spec["scale_factor"]
    text = LlamaConfig(
        **spec["text"], pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=spec["tie_word_embeddings"],
    )
    config = Idefics3Config(
        vision_config=vision, text_config=text, scale_factor=sf,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=spec["tie_word_embeddings"],
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(
            size={"longest_edge": spec["longest_edge"]},
            max_image_size={"longest_edge": spec["max_image_size"]}, do_image_splitting=True,
        ),
        tokenizer=tokenizer, chat_template=IDEFICS3_CHAT_TEMPLATE,
        image_seq_len=(vision["image_size"] // vision["patch_size"]) ** 2 // sf**2,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def count_params(folder: Path) -> int:
    """Parameters stored in a saved model folder (from its safetensors headers, no load)."""
    import struct

    total = 0
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                size = 1
                for d in meta["shape"]:
                    size *= d
                total += size
    return total
