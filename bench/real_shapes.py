"""Models of real published shapes with random weights, built here (no download), for cost benchmarks.

Each builder writes a folder that `--model` loads like a hub checkpoint: the architecture and sizes of the
published config.json, the published processor settings, a tokenizer trained on the spot (same special
tokens as the real one, a smaller vocabulary for text; the model keeps the real vocabulary size, so the
output layer costs what it really costs). Random weights: these folders measure cost, never quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Idefics3's processor writes these as plain text; the real tokenizers have each as one added token.
IDEFICS3_SPECIALS = (
    ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
     "<global-img>"]
    + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
)
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}"
    "{% if m['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}<image>{% endif %}{% endfor %}<end_of_utterance>{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)

# HuggingFaceTB/SmolVLM-256M-Instruct (config.json, preprocessor_config.json as published).
SMOLVLM_256M: dict[str, Any] = {
    "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
               "num_attention_heads": 12, "image_size": 512, "patch_size": 16},
    "text": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
             "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49280,
             "max_position_embeddings": 8192, "rope_theta": 100000.0, "rms_norm_eps": 1e-5},
    "scale_factor": 4, "longest_edge": 2048, "max_image_size": 512, "tie_word_embeddings": False,
}
# HuggingFaceTB/SmolVLM-Instruct (2.2B): SigLIP so400m-patch14-384 + SmolLM2-1.7B, pixel shuffle 3.
SMOLVLM_2B: dict[str, Any] = {
    "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
               "num_attention_heads": 16, "image_size": 384, "patch_size": 14},
    "text": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 49155,
             "max_position_embeddings": 16384, "rope_theta": 273768.0, "rms_norm_eps": 1e-5},
    "scale_factor": 3, "longest_edge": 1536, "max_image_size": 384, "tie_word_embeddings": False,
}
# A small stand-in of the same family for CI smoke runs (seconds, not minutes).
SMOKE: dict[str, Any] = {
    "vision": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 1024,
             "max_position_embeddings": 2048, "rope_theta": 10000.0, "rms_norm_eps": 1e-5},
    "scale_factor": 2, "longest_edge": 256, "max_image_size": 64, "tie_word_embeddings": False,
}
SHAPES = {"smolvlm-256m": SMOLVLM_256M, "smolvlm-2b": SMOLVLM_2B, "smoke": SMOKE}


def _corpus() -> list[str]:
    """English text to train the stand-in tokenizer: the prompts and the hand-written sample captions."""
    root = Path(__file__).resolve().parents[1]
    texts = [p.read_text() for p in sorted((root / "prompts").glob("*.txt"))]
    for line in (root / "mllm_retrieval" / "sample").glob("*.jsonl"):
        texts += [json.loads(x).get("text", "") for x in line.read_text().splitlines() if x.strip()]
    return texts


def _tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=IDEFICS3_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus() * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>"},
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
