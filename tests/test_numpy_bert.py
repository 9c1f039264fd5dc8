"""The numpy BERT encoder: the vectors of sentence-transformers without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mllm_retrieval.search.embedding import Embedder, MeanPoolEncoder, packaged_model_path
from mllm_retrieval.search.numpy_bert import NumpyBertEncoder, read_safetensors

SAMPLE = Path(__file__).parents[1] / "mllm_retrieval" / "library" / "sample" / "captions.jsonl"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tiny_embedder import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-bert"), seed=3)


def sample_texts() -> list[str]:
    return [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines() if line.strip()]


def test_packaged_model_matches_sentence_transformers_on_the_sample_captions():
    from sentence_transformers import SentenceTransformer

    texts = [*sample_texts(), "cat", "space shuttle", "", "a red motorcycle in a garage " * 60, "é 鸽子 🐦"]
    path = packaged_model_path()
    ours = NumpyBertEncoder.load(str(path)).encode(texts, batch_size=5)
    reference = SentenceTransformer(str(path), device="cpu").encode(texts, normalize_embeddings=True)
    cosine = (ours * reference).sum(1)
    assert ours.shape == reference.shape and cosine.min() >= 0.999
    assert np.abs(ours - reference).max() < 1e-4


def test_padding_and_batching_do_not_change_a_vector(tiny_model):
    enc = NumpyBertEncoder.load(str(tiny_model))
    texts = ["a cat", "a red car on a street at night by the bridge", "dog"]
    together = enc.encode(texts, batch_size=3)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    assert np.abs(together - alone).max() < 1e-5
    assert np.linalg.norm(together, axis=1) == pytest.approx(1, abs=1e-5)


def test_tiny_model_matches_the_torch_encoder(tiny_model):
    texts = ["a cat on a sofa", "", "pizza plate table"]
    ours = NumpyBertEncoder.load(str(tiny_model)).encode(texts)
    torch_vectors = MeanPoolEncoder.load(str(tiny_model), None).encode(texts)
    assert np.abs(ours - torch_vectors).max() < 1e-5


def test_models_it_cannot_run_are_declined(tiny_model, tmp_path):
    assert NumpyBertEncoder.load(str(tmp_path)) is None  # no model at all
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_model.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    (other / "1_Pooling").mkdir()
    pooling = json.loads((tiny_model / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (other / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert NumpyBertEncoder.load(str(other)) is None  # CLS pooling: sentence-transformers' job


def test_read_safetensors_gives_the_stored_tensors(tmp_path):
    from safetensors.numpy import save_file

    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, dtype=np.float16)}
    save_file(tensors, tmp_path / "t.safetensors")
    read = read_safetensors(tmp_path / "t.safetensors")
    assert np.array_equal(read["a"], tensors["a"]) and read["b"].dtype == np.float32


def test_a_query_is_embedded_without_importing_torch():
    heavy = ("torch", "sentence_transformers", "transformers")
    code = ("import sys; from mllm_retrieval.search.embedding import Embedder; "
            "v = Embedder().encode_query('cat'); "
            f"print(v.shape, [m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(384,) []"


def test_many_texts_go_through_the_bulk_model_and_agree_with_the_light_one():
    e = Embedder()
    texts = sample_texts()[:3]
    light = e.encode(texts)
    assert e._model is None  # a few texts: numpy only
    bulk = e.model.encode(texts, normalize_embeddings=True)
    assert (light * bulk).sum(1).min() >= 0.999
