"""Tiny randomly initialised models of other real architectures (Qwen2-VL, Qwen2.5-VL, Idefics3, ...).

Each builder saves a model and a real processor (image processor, tokenizer trained on the spot, chat
template) to a folder, so tests load it through the same public path as a hub checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tiny_models import CHAT_TEMPLATE, CORPUS, tiny_llama_config

QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}{{ '\\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)
IDEFICS3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
                     "<image>", "<global-img>"]
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}"
    "{% if m['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}<image>{% endif %}{% endfor %}<end_of_utterance>{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def train_bpe(specials: list[str], vocab_size: int = 300, corpus: list[str] | None = None) -> Any:
    """A byte-level BPE trained on CORPUS with `specials` at the start of the vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus or CORPUS * 20, trainer)
    return tok


def _qwen_tokenizer() -> Any:
    """A Qwen2Tokenizer (Qwen's own pre-tokeniser) over a vocabulary trained on the spot."""
    from transformers import Qwen2Tokenizer

    model = json.loads(train_bpe(QWEN_SPECIALS).to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return Qwen2Tokenizer(
        vocab=model["vocab"], merges=merges, unk_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>",
        },
    )


def _qwen_image_processor() -> Any:
    """Qwen2-VL's Pillow image processor; 14 px patches merged 2x2, at most 84x84 px: 1-9 image tokens."""
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=84 * 84)


def _qwen_text_kwargs(tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512,
        # head_dim 16: the 8 rotary frequencies split over (temporal, height, width)
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None,
    }


def _qwen_token_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"), "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>"),
    }


def _save(out: Path, model: Any, processor: Any) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _save_qwen(out: Path, model: Any, processor_cls: Any, tokenizer: Any) -> Path:
    """Save like a hub checkpoint. Qwen processors take a video processor, which needs torchvision:
    without it the processor cannot even be built, so its parts are saved one by one (same files)."""
    from transformers.utils import is_torchvision_available

    image_processor = _qwen_image_processor()
    if is_torchvision_available():  # untested here: this project's environment has no torchvision
        from transformers import Qwen2VLVideoProcessor

        processor = processor_cls(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
            chat_template=QWEN_CHAT_TEMPLATE,
        )
        return _save(out, model, processor)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(QWEN_CHAT_TEMPLATE)
    (out / "processor_config.json").write_text(json.dumps({"processor_class": processor_cls.__name__}))
    return out


def image_only_qwen_processor(folder: Path) -> Any:
    """The folder's Qwen2-VL / Qwen2.5-VL processor without its video processor (no torchvision needed).

    transformers cannot build these processors without torchvision even for images only; tests stand
    this in for AutoProcessor.from_pretrained so the rest of the loading path still runs for real.
    """
    import transformers
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    name = json.loads((folder / "processor_config.json").read_text())["processor_class"]
    base = getattr(transformers, name)

    class ImageOnly(base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageOnly(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        chat_template=(folder / "chat_template.jinja").read_text(),
    )


def build_tiny_qwen2_vl(out: Path, seed: int = 0) -> Path:
    """A Qwen2-VL: 2-block ViT (14 px patches, 2x2 merger), 2-layer Qwen2 text model with M-RoPE."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer = _qwen_tokenizer()
    config = Qwen2VLConfig(
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2},
        text_config=_qwen_text_kwargs(tokenizer), **_qwen_token_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    return _save_qwen(out, model, Qwen2VLProcessor, tokenizer)


def build_tiny_qwen2_5_vl(out: Path, seed: int = 0) -> Path:
    """A Qwen2.5-VL: like Qwen2-VL, with windowed attention in the ViT (block 1 full attention)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer = _qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
            "window_size": 56, "fullatt_block_indexes": [1],
        },
        text_config=_qwen_text_kwargs(tokenizer), **_qwen_token_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return _save_qwen(out, model, Qwen2_5_VLProcessor, tokenizer)


def build_tiny_idefics3(out: Path, seed: int = 0) -> Path:
    """An Idefics3 (SmolVLM's architecture): 2-layer SigLIP ViT at 32 px, pixel shuffle, 2-layer Llama."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(IDEFICS3_SPECIALS), bos_token="<|im_start|>",
        eos_token="<end_of_utterance>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_size, patch_size, scale_factor = 32, 8, 2
    text = tiny_llama_config(tokenizer)
    config = Idefics3Config(
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": image_size, "patch_size": patch_size,
        },
        text_config=text, scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(
            size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size},
            do_image_splitting=False,
        ),
        tokenizer=tokenizer, chat_template=IDEFICS3_CHAT_TEMPLATE,
        image_seq_len=(image_size // patch_size) ** 2 // scale_factor**2,
    )
    return _save(out, model, processor)


def build_tiny_llava_next(out: Path, seed: int = 0) -> Path:
    """A LLaVA-NeXT: 2-layer CLIP tower at 32 px, any-resolution tiling on 32-64 px grids, 2-layer Llama."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        PreTrainedTokenizerFast,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(["<unk>", "<s>", "</s>", "<pad>", "<image>"]), unk_token="<unk>",
        bos_token="<s>", eos_token="</s>", pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
    )
    image_size, patch_size = 32, 8
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size, projection_dim=32,
    )
    text = tiny_llama_config(tokenizer)
    config = LlavaNextConfig(
        vision_config=vision, text_config=text, image_grid_pinpoints=pinpoints,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1,
        image_seq_length=(image_size // patch_size) ** 2,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
            image_grid_pinpoints=pinpoints,
        ),
        tokenizer=tokenizer, patch_size=patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    return _save(out, model, processor)
