"""Dense baseline: CLIP-style cosine similarity between every image and a text prompt per query.

`clip_scores` loads a dual encoder through transformers (`AutoModel` + `AutoProcessor`; CLIP, and any
model with the same `get_image_features` / `get_text_features` interface such as SigLIP) from a local
folder or a hub id, with the captioner's resolution rules: a local folder is used as is, a hub id must be in
the Hugging Face cache when the hub cannot be reached (or HF_HUB_OFFLINE is set), and anything that cannot
be had fails fast with a one-line `ModelLoadError` before any image is read.

Scores are the raw cosine similarity (no logit scale, no softmax across queries) between the L2-normalised
image embedding and the L2-normalised embedding of ``prompt.format(query)``, as float64 in [-1, 1]. The model
runs in float32 on every device, so scores do not depend on a half-precision rounding of the device.

Unreadable images
-----------------
An image that `mllm_retrieval.capture.images.open_image` cannot use (missing, empty, corrupt, over the pixel
limit) is never dropped: it keeps its position and scores ``-inf`` for every query, and a warning names
the file and the reason. `-inf` is the "no match" score of `mllm_retrieval.evaluation.metrics`: such an
image is ranked last, in one tie block, and still counts in the evaluation set, exactly as an image the
captioner could not read gets no caption and so no keyword match.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..capture.captioners.hf import DEFAULT_MODEL as CAPTIONER_DEFAULT_MODEL
from ..capture.captioners.hf import pick_device, resolve_source
from ..capture.images import open_image
from ..errors import ImageError, ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_PROMPT = "a photo of a {}"


def clip_scores(
    image_paths: list[Path],
    queries: dict[str, str],
    model: str,
    device: str = "auto",
    batch_size: int = 16,
    prompt: str = DEFAULT_PROMPT,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Cosine similarity of each image to ``prompt.format(query)``, per query key.

    Returns ``{key: float64 array of len(image_paths)}``, aligned to `image_paths`; unreadable images score
    ``-inf`` (see the module docstring). Queries with the same text get identical arrays.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if "{}" not in prompt:
        raise ValueError(f"prompt {prompt!r} has no '{{}}' for the query text")
    texts = {key: prompt.format(query) for key, query in queries.items()}

    import torch

    dev = pick_device(device, torch)
    net, processor = _load(model, dev)
    paths = [Path(p) for p in image_paths]
    image_emb, readable = _embed_images(paths, net, processor, dev, batch_size, progress)
    unique = list(dict.fromkeys(texts.values()))
    text_emb = _embed_texts(unique, net, processor, dev, batch_size)
    sims = np.clip(image_emb @ text_emb.T, -1.0, 1.0)  # (readable images, unique texts)
    column = {text: j for j, text in enumerate(unique)}
    scores: dict[str, np.ndarray] = {}
    for key, text in texts.items():
        out = np.full(len(paths), -np.inf, dtype=np.float64)
        out[readable] = sims[:, column[text]]
        scores[key] = out
    return scores


def _load(model_id: str, device: str) -> tuple[Any, Any]:
    """(model, processor) in eval mode on `device`; every failure is a one-line ModelLoadError."""
    import torch
    from transformers import AutoModel, AutoProcessor

    try:
        source, local_only = resolve_source(model_id)
    except ModelLoadError as e:  # the shared message suggests the captioner's default model
        raise ModelLoadError(str(e).replace(CAPTIONER_DEFAULT_MODEL, DEFAULT_CLIP_MODEL)) from e
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
        net = AutoModel.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load model {model_id!r} as a CLIP-style dual encoder: {first}") from e
    missing = [
        name for name, ok in (
            ("get_image_features", hasattr(net, "get_image_features")),
            ("get_text_features", hasattr(net, "get_text_features")),
            ("an image processor", getattr(processor, "image_processor", None) is not None),
            ("a tokenizer", getattr(processor, "tokenizer", None) is not None),
        ) if not ok
    ]
    if missing:
        raise ModelLoadError(
            f"model {model_id!r} ({type(net).__name__}) is not a CLIP-style dual encoder: it lacks "
            f"{', '.join(missing)}; pass a CLIP or SigLIP model such as {DEFAULT_CLIP_MODEL}"
        )
    net = net.to(device).eval()
    log.info("loaded dense baseline %s on %s", model_id, device)
    return net, processor


def _embed_images(
    paths: Sequence[Path], net: Any, processor: Any, device: str, batch_size: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised float64 embeddings of the readable images, their indices into `paths`)."""
    from tqdm import tqdm

    chunks: list[np.ndarray] = []
    readable: list[int] = []
    batch: list[Any] = []
    bar = tqdm(total=len(paths), desc="CLIP images", unit="img", file=sys.stderr, disable=not progress)

    def flush() -> None:
        if batch:
            inputs = processor(images=batch, return_tensors="pt").to(device)
            chunks.append(_encode(net.get_image_features, dict(inputs)))
            bar.update(len(batch))
            batch.clear()

    try:
        for i, path in enumerate(paths):
            try:
                image = open_image(path)
            except ImageError as e:
                log.warning("dense baseline: %s: %s; it scores -inf for every query", path, e)
                bar.update(1)
                continue
            batch.append(image)
            readable.append(i)
            if len(batch) == batch_size:
                flush()
        flush()
    finally:
        bar.close()
    if not chunks:
        dim = _projection_dim(net)
        return np.zeros((0, dim), dtype=np.float64), np.zeros(0, dtype=np.intp)
    return np.concatenate(chunks), np.asarray(readable, dtype=np.intp)


def _embed_texts(texts: Sequence[str], net: Any, processor: Any, device: str, batch_size: int) -> np.ndarray:
    """L2-normalised float64 embeddings of `texts`, one row each."""
    if not texts:
        return np.zeros((0, _projection_dim(net)), dtype=np.float64)
    # SigLIP was trained on texts padded to the maximum length and needs them padded the same way.
    siglip = str(getattr(net.config, "model_type", "")).startswith("siglip")
    padding: bool | str = "max_length" if siglip else True
    chunks = []
    for start in range(0, len(texts), batch_size):
        inputs = processor(
            text=list(texts[start:start + batch_size]), padding=padding, truncation=True, return_tensors="pt"
        ).to(device)
        wanted = {k: inputs[k] for k in ("input_ids", "attention_mask") if k in inputs}
        chunks.append(_encode(net.get_text_features, wanted))
    return np.concatenate(chunks)


def _encode(fn: Any, inputs: dict[str, Any]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = fn(**inputs)
    # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor.
    features = out if isinstance(out, torch.Tensor) else out.pooler_output
    emb = features.detach().to("cpu", torch.float64).numpy()
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms > 0, norms, 1.0)


def _projection_dim(net: Any) -> int:
    config = net.config
    dim = getattr(config, "projection_dim", None)
    if dim is None:
        dim = getattr(getattr(config, "text_config", None), "hidden_size", 0)
    return int(dim)
