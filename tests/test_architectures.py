"""The transformers captioner on tiny random models of other real architectures than LLaVA-1.5.

Each model is built and saved once per session (tests/tiny_archs.py) and loaded through the public path,
get_captioner("transformers", model=folder). Without torchvision, transformers cannot build a Qwen2-VL or
Qwen2.5-VL processor at all (it insists on a video processor); there the load is checked to fail with one
clear line, and the captioning checks run with an image-only processor standing in for AutoProcessor.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from tiny_archs import (
    build_tiny_idefics3,
    build_tiny_llava_next,
    build_tiny_qwen2_5_vl,
    build_tiny_qwen2_vl,
    image_only_qwen_processor,
)

from mllm_retrieval.capture.captioners import get_captioner
from mllm_retrieval.errors import ModelLoadError

BUILDERS = {
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "idefics3": build_tiny_idefics3,
    "llava_next": build_tiny_llava_next,
}
QWEN = ("qwen2_vl", "qwen2_5_vl")
# image-size dependent prompt lengths, so a batch really is left padded
VARIABLE_LENGTH = ("qwen2_vl", "qwen2_5_vl", "llava_next")
PROMPT = "Describe the image in tags."


def _torchvision() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


def images() -> list[Image.Image]:
    """Three images of different sizes and aspect ratios (and so, for some models, token counts)."""
    return [
        Image.new("RGB", (40, 30), (220, 40, 40)),
        Image.new("RGB", (30, 70), (40, 200, 90)),
        Image.frombytes("RGB", (90, 60), bytes((i * 37) % 251 for i in range(90 * 60 * 3))),
    ]


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory):
    """Build each architecture on first use, once per session."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = BUILDERS[name](tmp_path_factory.mktemp(f"tiny-{name}"))
        return built[name]

    return get


@pytest.fixture(scope="session")
def loaded(tiny_folders):
    """One loaded captioner per architecture, through get_captioner(...).load()."""
    captioners: dict[str, object] = {}

    def get(name: str):
        if name not in captioners:
            folder = tiny_folders(name)
            captioner = get_captioner("transformers", model=str(folder), max_new_tokens=10)
            with pytest.MonkeyPatch.context() as mp:
                if name in QWEN and not _torchvision():
                    import transformers

                    mp.setattr(
                        transformers.AutoProcessor, "from_pretrained",
                        lambda *a, **k: image_only_qwen_processor(folder),
                    )
                captioner.load()
            captioners[name] = captioner
        return captioners[name]

    return get


@pytest.mark.parametrize("name", list(BUILDERS))
def test_one_answer_per_image_of_different_sizes(loaded, name):
    captioner = loaded(name)
    answers = captioner.describe(images(), PROMPT)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert captioner._processor.tokenizer.padding_side == "left"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_batched_equals_one_by_one_under_greedy_decoding(loaded, name):
    captioner = loaded(name)
    batched = captioner.describe(images(), PROMPT)
    single = [captioner.describe([im], PROMPT)[0] for im in images()]
    assert batched == single


@pytest.mark.parametrize("name", VARIABLE_LENGTH)
def test_images_of_different_sizes_make_prompts_of_different_lengths(loaded, name):
    """So the batched test above really exercises left padding."""
    from mllm_retrieval.capture.captioners.hf import _chat_prompt

    processor = loaded(name)._processor
    text = _chat_prompt(processor, PROMPT)
    lengths = {processor(images=[[im]], text=[text], return_tensors="pt")["input_ids"].shape[1]
               for im in images()}
    assert len(lengths) > 1


@pytest.mark.parametrize("name", QWEN)
def test_qwen_without_torchvision_is_one_clear_line(tiny_folders, name):
    if _torchvision():
        pytest.skip("torchvision is installed: the Qwen processors load for real")
    captioner = get_captioner("transformers", model=str(tiny_folders(name)))
    with pytest.raises(ModelLoadError, match="(?i)torchvision") as info:
        captioner.load()
    assert "\n" not in str(info.value)
