"""The dense CLIP baseline, through its public entry point, on a tiny random CLIP saved to disk."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm_retrieval.errors import ModelLoadError
from mllm_retrieval.evaluation.clip_baseline import clip_scores

QUERIES = {"cat": "cat", "dog": "dog on a bridge", "car": "red car"}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def pictures(tmp_path) -> list[Path]:
    """Six small synthetic pictures of different sizes, colours and modes; the last repeats the first."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        pixels = rng.integers(0, 256, size=(24 + 9 * i, 40 + 5 * i, 3), dtype=np.uint8)
        paths.append(folder / f"p{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    Image.new("P", (30, 30), 7).save(folder / "palette.gif")
    paths.append(folder / "palette.gif")
    paths.append(paths[0])
    return paths


def scores(model: Path, paths: list[Path], queries=None, **kwargs) -> dict[str, np.ndarray]:
    return clip_scores(paths, QUERIES if queries is None else queries, str(model), progress=False, **kwargs)


def test_one_float64_array_per_query_aligned_to_the_images(tiny_clip, pictures):
    result = scores(tiny_clip, pictures)
    assert list(result) == list(QUERIES)
    for arr in result.values():
        assert arr.dtype == np.float64 and arr.shape == (len(pictures),)
        assert np.isfinite(arr).all()
    # not one constant: the images differ, so do their scores
    assert np.ptp(result["cat"]) > 0


def test_scores_are_cosines_in_minus_one_to_one(tiny_clip, pictures):
    for arr in scores(tiny_clip, pictures).values():
        assert (arr >= -1.0).all() and (arr <= 1.0).all()


def test_deterministic_and_order_follows_the_input(tiny_clip, pictures):
    first = scores(tiny_clip, pictures)
    again = scores(tiny_clip, pictures)
    backwards = scores(tiny_clip, pictures[::-1])
    for key in QUERIES:
        np.testing.assert_array_equal(first[key], again[key])
        np.testing.assert_allclose(backwards[key][::-1], first[key], atol=1e-6)


def test_identical_images_score_identically(tiny_clip, pictures, tmp_path):
    copy = tmp_path / "copy.png"
    copy.write_bytes(pictures[0].read_bytes())
    result = scores(tiny_clip, [*pictures, copy])
    for arr in result.values():
        assert arr[0] == arr[-2] == arr[-1]  # the same path twice, and a byte-identical copy


def test_same_query_text_under_two_keys_gives_identical_arrays(tiny_clip, pictures):
    queries = {"a": "dog on a bridge", "long": "a much longer query text", "b": "dog on a bridge"}
    result = scores(tiny_clip, pictures, queries)
    np.testing.assert_array_equal(result["a"], result["b"])
    assert not np.array_equal(result["a"], result["long"])


def test_a_query_scores_the_same_alone_or_padded_among_longer_ones(tiny_clip, pictures):
    alone = scores(tiny_clip, pictures, {"q": "cat"})["q"]
    together = scores(tiny_clip, pictures, {"long": "a cat and a dog on a red bridge over water", "q": "cat"})
    np.testing.assert_allclose(together["q"], alone, atol=1e-5, rtol=0)


def test_a_query_over_the_text_length_limit_is_truncated_not_fatal(tiny_clip, pictures):
    result = scores(tiny_clip, pictures, {"huge": " ".join(["pigeon"] * 200)})
    assert np.isfinite(result["huge"]).all()


def test_prompt_template_is_applied(tiny_clip, pictures):
    default = scores(tiny_clip, pictures, {"q": "cat"})["q"]
    explicit = scores(tiny_clip, pictures, {"q": "cat"}, prompt="a photo of a {}")["q"]
    other = scores(tiny_clip, pictures, {"q": "cat"}, prompt="{}")["q"]
    np.testing.assert_array_equal(default, explicit)
    assert not np.allclose(default, other)
    with pytest.raises(ValueError, match="no '{}'"):
        scores(tiny_clip, pictures, prompt="a photo")


def test_batch_size_does_not_change_scores(tiny_clip, pictures):
    one = scores(tiny_clip, pictures, batch_size=1)
    eight = scores(tiny_clip, pictures, batch_size=8)
    three = scores(tiny_clip, pictures, batch_size=3)
    for key in QUERIES:
        np.testing.assert_allclose(one[key], eight[key], atol=1e-5, rtol=0)
        np.testing.assert_allclose(three[key], eight[key], atol=1e-5, rtol=0)


def test_real_coco_photos(tiny_clip, coco_images):
    paths = sorted(coco_images.glob("*.jpg"))
    assert len(paths) == 3
    result = scores(tiny_clip, paths, batch_size=2)
    for arr in result.values():
        assert arr.shape == (3,) and np.isfinite(arr).all() and (np.abs(arr) <= 1).all()


def test_unreadable_images_score_minus_inf_in_place_and_are_named(tiny_clip, pictures, tmp_path, caplog):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    paths = [corrupt, pictures[0], empty, pictures[1], missing]
    clean = scores(tiny_clip, pictures[:2])
    with caplog.at_level(logging.WARNING, logger="mllm_retrieval.evaluation.clip_baseline"):
        result = scores(tiny_clip, paths, batch_size=1)
    for key, arr in result.items():
        assert arr.shape == (5,)
        assert np.isneginf(arr[[0, 2, 4]]).all()
        np.testing.assert_allclose(arr[[1, 3]], clean[key], atol=1e-6)
    logged = caplog.text
    assert "corrupt.jpg" in logged and "empty.png" in logged and "missing.jpg" in logged


def test_all_unreadable_or_no_images(tiny_clip, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("text")
    result = scores(tiny_clip, [bad, bad])
    assert all(np.isneginf(arr).all() and arr.shape == (2,) for arr in result.values())
    empty = scores(tiny_clip, [])
    assert all(arr.shape == (0,) and arr.dtype == np.float64 for arr in empty.values())
    assert scores(tiny_clip, [bad], {}) == {}


def test_progress_bar_goes_to_stderr(tiny_clip, pictures, capsys):
    clip_scores(pictures[:2], {"q": "cat"}, str(tiny_clip), progress=True)
    captured = capsys.readouterr()
    assert "CLIP images" in captured.err and "CLIP images" not in captured.out


def test_missing_model_folder_is_one_line(tmp_path, pictures):
    with pytest.raises(ModelLoadError, match="not found") as info:
        clip_scores(pictures, QUERIES, str(tmp_path / "no-such-clip"), progress=False)
    assert "\n" not in str(info.value)
    assert "clip" in str(info.value).lower()


def test_uncached_hub_id_offline_says_how_to_fix(monkeypatch, pictures):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hf download someone/not-downloaded-clip") as info:
        clip_scores(pictures, QUERIES, "someone/not-downloaded-clip", progress=False)
    assert "\n" not in str(info.value)


def test_folder_that_is_not_a_dual_encoder(tmp_path, pictures):
    (tmp_path / "config.json").write_text('{"model_type": "nonsense"}')
    with pytest.raises(ModelLoadError, match="cannot load model") as info:
        clip_scores(pictures, QUERIES, str(tmp_path), progress=False)
    assert "\n" not in str(info.value)


def test_bad_batch_size(tiny_clip, pictures):
    with pytest.raises(ValueError, match="batch_size"):
        scores(tiny_clip, pictures, batch_size=0)
