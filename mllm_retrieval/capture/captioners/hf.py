"""Local image-text-to-text models through transformers (LLaVA, Qwen2-VL, SmolVLM, ...)."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ...defaults import MAX_NEW_TOKENS
from ...errors import BackendError, ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
PAPER_MODEL = "llava-hf/llava-1.5-7b-hf"
DTYPES = ("auto", "float32", "float16", "bfloat16")


class TransformersCaptioner:
    """Any AutoModelForImageTextToText model, from a local folder or a hub id."""

    backend = "transformers"

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        quantize: str | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        min_new_tokens: int | None = None,
        image_splitting: bool | None = None,
    ) -> None:
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendError(f"the transformers backend needs {' and '.join(missing)}: pip install "
                               "'mllm-retrieval[local]' (or caption through a server: --backend openai)")
        self.model_id = model or DEFAULT_MODEL
        self.device = device
        self.dtype = dtype
        self.quantize = quantize
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.image_splitting = image_splitting
        self._model = None
        self._processor = None
        if dtype not in DTYPES:
            raise BackendError(f"invalid --dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        if quantize not in (None, "4bit", "8bit"):
            raise BackendError(f"invalid --quantize {quantize!r}: use 4bit or 8bit")

    def params(self) -> dict[str, Any]:
        """Settings that change the output: dtype as resolved, and the model's own image splitting."""
        params: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens, "greedy": True, "quantize": self.quantize,
            "dtype": self.resolved_dtype(), "stop": "answered",
        }
        if self.image_splitting is not None:
            params["image_splitting"] = self.image_splitting
        return params

    def resolved_dtype(self) -> str:
        """The dtype `auto` stands for on this machine (float32, bfloat16 or float16)."""
        if self.dtype != "auto":
            return self.dtype
        import torch

        return str(_pick_dtype("auto", pick_device(self.device, torch), torch)).removeprefix("torch.")

    def check(self) -> None:
        """Fail fast, before any work, on a device, quantisation or model that cannot be had."""
        import torch

        device = pick_device(self.device, torch)
        if self.quantize:
            _bnb_config(self.quantize, _pick_dtype(self.dtype, device, torch), torch)
        resolve_source(self.model_id)

    def load(self) -> None:
        """Load processor and model (once); errors become one-line ModelLoadErrors."""
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        device = pick_device(self.device, torch)
        kwargs: dict[str, Any] = {"dtype": _pick_dtype(self.dtype, device, torch)}
        if self.quantize:
            kwargs["quantization_config"] = _bnb_config(self.quantize, kwargs["dtype"], torch)
            kwargs["device_map"] = "auto"
        source, local_only = resolve_source(self.model_id)
        try:
            processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
            model = AutoModelForImageTextToText.from_pretrained(
                source, local_files_only=local_only, **kwargs
            )
        except (OSError, ValueError, KeyError, ImportError) as e:
            # ImportError: e.g. Qwen2-VL's processor insists on a video processor, which needs torchvision
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if isinstance(e, ImportError) and "orchvision" in first:
                first = "its processor needs torchvision: pip install torchvision (matching your torch)"
            raise ModelLoadError(
                f"cannot load model {self.model_id!r} as an image-text-to-text model: {first}"
            ) from e
        if not self.quantize:
            model = model.to(device)
        model.eval()
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        self._processor, self._model = processor, model
        log.info("loaded %s on %s (%s)", self.model_id, device, kwargs["dtype"])

    def inputs(self, images: Sequence[Image.Image], prompt: str) -> Any:
        """The processor's batch for these images under the chat template (left padded)."""
        self.load()
        processor = self._processor
        extra: dict[str, Any] = {}
        if self.image_splitting is not None and _splits_images(processor):
            extra["do_image_splitting"] = self.image_splitting
        return processor(
            images=[[im] for im in images], text=[_chat_prompt(processor, prompt)] * len(images),
            return_tensors="pt", padding=True, **extra,
        )

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        """Greedy batched generation with left padding; one answer per image."""
        if not images:
            return []
        self.load()
        import torch

        processor, model = self._processor, self._model
        inputs = self.inputs(images, prompt).to(model.device)
        float_dtype = next(model.parameters()).dtype
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(float_dtype)
        gen: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        tokenizer = getattr(processor, "tokenizer", processor)
        if self.min_new_tokens:
            gen["min_new_tokens"] = self.min_new_tokens  # pinned length (benchmarks): no early stop
        else:
            from .stopping import answered_criteria

            gen["stopping_criteria"] = answered_criteria(tokenizer, prompt, inputs["input_ids"].shape[1])
        if getattr(tokenizer, "pad_token_id", None) is not None:
            gen["pad_token_id"] = tokenizer.pad_token_id
        with torch.inference_mode():
            out = model.generate(**inputs, **gen)
        if not getattr(model.config, "is_encoder_decoder", False):
            out = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]


def _splits_images(processor: Any) -> bool:
    """Whether the processor cuts each image into sub-images itself (Idefics3, SmolVLM)."""
    return hasattr(getattr(processor, "image_processor", None), "do_image_splitting")


def _chat_prompt(processor: Any, prompt: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    if getattr(processor, "chat_template", None):
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    token = getattr(processor, "image_token", "<image>")
    return f"USER: {token}\n{prompt} ASSISTANT:"


def resolve_source(model_id: str) -> tuple[str, bool]:
    """(source, local_files_only): a local folder, a cached hub id, or a hub id to download."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return str(path), True
    if model_id.startswith(("/", ".", "~")) or path.exists() or model_id.count("/") > 1:
        raise ModelLoadError(
            f"model folder {model_id!r} not found: pass an existing folder or a hub id such as "
            f"{DEFAULT_MODEL}"
        )
    if _in_cache(model_id):
        return model_id, True
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or not _hub_reachable():
        raise ModelLoadError(
            f"model {model_id!r} is not in the local Hugging Face cache and the hub cannot be "
            f"reached: run `hf download {model_id}` where there is network, or pass a local "
            "folder with --model"
        )
    return model_id, False


def _in_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model_id, "config.json")
        return isinstance(hit, str)
    except Exception:
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    name, _, port = host.partition(":")
    try:
        with socket.create_connection((name, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def pick_device(device: str, torch: Any) -> str:
    """auto -> cuda, mps or cpu, whichever this torch has; an explicit device it lacks is a BackendError."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError("--device cuda asked for, but this PyTorch sees no CUDA GPU")
    return device


def _pick_dtype(dtype: str, device: str, torch: Any) -> Any:
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and far slower than float32 (measured 0.6 vs 33 GFLOP/s on an AVX2-only EPYC)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _bnb_config(quantize: str, dtype: Any, torch: Any) -> Any:
    if not torch.cuda.is_available():
        raise BackendError(f"--quantize {quantize} needs a CUDA GPU; none is visible to PyTorch")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BackendError(
            f"--quantize {quantize} needs bitsandbytes: pip install 'mllm-retrieval[gpu]'"
        )
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
    return BitsAndBytesConfig(load_in_8bit=True)
