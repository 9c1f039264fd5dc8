"""What makes captioning cheaper: early stop, the model's own splitting, dtype choice, the dry run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import mllmret
from PIL import Image
from tiny_archs import build_tiny_idefics3

from mllm_retrieval.capture.captioners import get_captioner
from mllm_retrieval.capture.captioners.hf import cpu_has_native_bf16
from mllm_retrieval.capture.captioners.stopping import answered, answered_criteria, required_labels
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.cli.main import Splitting


def test_the_default_prompt_is_answered_once_tags_and_caption_lines_are_written():
    labels = required_labels(load_prompt().text)
    assert labels == ("Tags", "Caption")
    assert not answered("Tags: dog, park\nCaption: a dog", labels)  # caption line not ended yet
    assert not answered("Caption: a dog in a park.\n", labels)  # no tags yet
    assert answered("Tags: dog, park\nCaption: a dog in a park.\n", labels)
    assert answered("**Caption:** a dog.\n**Tags:** dog, grass\n", labels)
    assert not answered("Tags:\nCaption:\n", labels)  # labels without content


def test_prompts_without_labels_never_stop_early():
    labels = required_labels(load_prompt("caption").text)
    assert labels == ()
    assert not answered("A dog.\n\nAnother line.\n", labels)


class _Tokenizer:
    """Decodes each row to a fixed text: enough to drive the stopping criterion."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def batch_decode(self, ids, skip_special_tokens=True):
        return self.texts[: len(ids)]


def test_each_row_of_a_batch_stops_on_its_own():
    tok = _Tokenizer(["Tags: a, b\nCaption: c.\n", "Tags: a, b\nCaption: c"])
    [criterion] = answered_criteria(tok, load_prompt().text, prompt_length=3)
    done = criterion(torch.zeros((2, 7), dtype=torch.long), None)
    assert done.tolist() == [True, False]


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n")
    sapphire = tmp_path / "spr"
    sapphire.write_text("flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16(str(avx2))
    assert cpu_has_native_bf16(str(sapphire))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))


def test_run_identity_names_the_resolved_dtype_and_the_splitting(tiny_llava):
    plain = get_captioner("transformers", model=str(tiny_llava))
    assert plain.params()["dtype"] in ("float32", "bfloat16")
    assert "image_splitting" not in plain.params()
    split_off = get_captioner("transformers", model=str(tiny_llava), image_splitting=False)
    full = get_captioner("transformers", model=str(tiny_llava), dtype="float32")
    half = get_captioner("transformers", model=str(tiny_llava), dtype="bfloat16")
    assert split_off.params()["image_splitting"] is False
    assert half.params()["dtype"] == "bfloat16"
    assert len({repr(sorted(c.params().items())) for c in (full, split_off, half)}) == 3


@pytest.fixture(scope="module")
def splitting_idefics3(tmp_path_factory) -> Path:
    """A tiny Idefics3 whose processor splits like SmolVLM's (up to 2x2 sub-images plus the whole)."""
    from transformers import AutoProcessor

    folder = build_tiny_idefics3(tmp_path_factory.mktemp("idefics3-split"))
    processor = AutoProcessor.from_pretrained(folder)
    processor.image_processor.do_image_splitting = True
    processor.image_processor.size = {"longest_edge": 64}
    processor.save_pretrained(folder)
    return folder


def test_model_splitting_off_sends_one_sub_image_per_tile(splitting_idefics3):
    tile = Image.new("RGB", (60, 40), "red")
    on = get_captioner("transformers", model=str(splitting_idefics3))
    off = get_captioner("transformers", model=str(splitting_idefics3), image_splitting=False)
    image_token = on.inputs([tile], "Tags?")
    n_on = int((image_token["input_ids"] == on._model.config.image_token_id).sum())
    n_off = int((off.inputs([tile], "Tags?")["input_ids"] == off._model.config.image_token_id).sum())
    assert image_token["pixel_values"].shape[1] > 1
    assert off.inputs([tile], "Tags?")["pixel_values"].shape[1] == 1
    assert n_off < n_on
    assert len(off.describe([tile, tile], "Tags?")) == 2


def test_auto_splitting_is_off_when_the_grid_makes_tiles():
    assert Splitting.auto.resolve("2x2") is False
    assert Splitting.auto.resolve("none") is True
    assert Splitting.on.resolve("2x2") is True
    assert Splitting.off.resolve("none") is False


def test_dry_run_counts_and_times_without_writing(tiny_llava, coco_images, tmp_path):
    db = tmp_path / "lib.db"
    out = mllmret("caption", coco_images, "--model", tiny_llava, "--max-new-tokens", "4",
                  "--dry-run", "--db", db).output
    assert "3 image files: 3 to caption, 0 already captioned" in out
    assert "15 tiles to caption" in out
    assert "s per tile -> about" in out
    assert not db.exists()
    mllmret("caption", coco_images, "--model", tiny_llava, "--max-new-tokens", "4", "-q", "--db", db)
    out = mllmret("caption", coco_images, "--model", tiny_llava, "--max-new-tokens", "4",
                  "--dry-run", "--db", db).output
    assert "3 to caption" not in out and "0 to caption, 3 already captioned" in out
    assert "0 tiles to caption" in out
