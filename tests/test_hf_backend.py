import pytest
from PIL import Image

from mllm_retrieval.capture.captioners import get_captioner
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.errors import BackendError, ModelLoadError


def images():
    return [Image.new("RGB", (40 + 10 * i, 30 + 7 * i), (40 * i, 200 - 30 * i, 90)) for i in range(5)]


def test_loads_a_local_model_through_the_public_path(tiny_llava):
    captioner = get_captioner("transformers", model=str(tiny_llava), max_new_tokens=8)
    answers = captioner.describe(images()[:2], "Describe the image in tags.")
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert captioner._processor.tokenizer.padding_side == "left"


def test_batched_equals_one_by_one_under_greedy_decoding(tiny_llava):
    captioner = get_captioner("transformers", model=str(tiny_llava), max_new_tokens=12)
    prompt = load_prompt().text
    batched = captioner.describe(images(), prompt)
    single = [captioner.describe([im], prompt)[0] for im in images()]
    assert batched == single


def test_min_new_tokens_pins_the_output_length(tiny_llava):
    captioner = get_captioner("transformers", model=str(tiny_llava), max_new_tokens=6, min_new_tokens=6)
    [answer] = captioner.describe(images()[:1], "Tags?")
    assert answer  # six tokens cannot all be special


def test_missing_local_folder_is_one_clear_line(tmp_path):
    captioner = get_captioner("transformers", model=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelLoadError, match="not found") as info:
        captioner.load()
    assert "\n" not in str(info.value)


def test_uncached_hub_id_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    captioner = get_captioner("transformers", model="someone/not-downloaded-model")
    with pytest.raises(ModelLoadError, match="hf download someone/not-downloaded-model"):
        captioner.load()


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "nonsense"}')
    with pytest.raises(ModelLoadError, match="cannot load model"):
        get_captioner("transformers", model=str(tmp_path)).load()


def test_quantize_needs_cuda(tiny_llava):
    captioner = get_captioner("transformers", model=str(tiny_llava), quantize="4bit")
    with pytest.raises(BackendError, match="CUDA"):
        captioner.load()


def test_bad_dtype_and_device():
    with pytest.raises(BackendError, match="dtype"):
        get_captioner("transformers", dtype="int3")
    captioner = get_captioner("transformers", model="x/y", device="cuda")
    with pytest.raises(BackendError, match="CUDA"):
        captioner.load()


def test_pipeline_with_the_tiny_model_stores_noise_safely(store, photos, tiny_llava):
    captioner = get_captioner("transformers", model=str(tiny_llava), max_new_tokens=10)
    s = caption_paths(store, [photos], captioner, load_prompt(), CaptionSettings(batch_size=3),
                      progress=False)
    assert s.captioned_tiles == 20 and s.failed == []
    rows = store.db.execute("SELECT raw, tags, caption FROM captions").fetchall()
    assert len(rows) == 20 and all(isinstance(raw, str) for raw, _, _ in rows)


def test_a_backend_refuses_options_it_does_not_declare():
    from mllm_retrieval.capture.captioners import backend_options

    assert {"dtype", "image_splitting", "max_new_tokens"} <= backend_options("transformers")
    assert "dtype" not in backend_options("openai") and "concurrency" in backend_options("openai")
    with pytest.raises(BackendError, match="backend 'transformers' has no option concurrency"):
        get_captioner("transformers", model="x/y", concurrency=4)


def test_the_cli_says_which_option_does_not_apply_to_the_backend(tmp_path):
    from cli_helpers import mllmret

    r = mllmret("caption", tmp_path, "--backend", "openai", "--model", "m", "--dtype", "float16",
                "--db", tmp_path / "lib.db", ok=False)
    assert r.exit_code == 1 and "--dtype does not apply to --backend openai" in r.output
    assert not (tmp_path / "lib.db").exists()
