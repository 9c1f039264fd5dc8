"""Semantic index and embedder: the packaged model offline, a tiny random model for the plumbing,
incremental updates through the change log, persistence and resume, the CLI and eval modes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from test_fusion import FakeEmbedder
from test_search import add
from typer.testing import CliRunner

from mllm_retrieval.cli import app
from mllm_retrieval.evaluation.runner import EvalConfig, hybrid_matrix, run_eval
from mllm_retrieval.library.store import Store
from mllm_retrieval.search import fusion
from mllm_retrieval.search.documents import Unit, embedding_text
from mllm_retrieval.search.embedding import DEFAULT_EMBEDDER, Embedder, EmbedderError
from mllm_retrieval.search.index import semantic_index
from mllm_retrieval.search.index.semantic_index import SemanticIndex
from mllm_retrieval.search.searcher import Searcher

runner = CliRunner()


@pytest.fixture(scope="session")
def tiny_st(tmp_path_factory) -> Path:
    from tiny_embedder import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


class Counting:
    """Wraps an embedder and counts the document texts it embeds."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.texts = inner, inner.name, []

    def encode(self, texts, progress=False, query=False):
        if not query:
            self.texts += list(texts)
        return self.inner.encode(texts, progress=progress, query=query)

    def encode_query(self, text):
        return self.inner.encode_query(text)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_packaged_model_loads_and_embeds_with_the_network_off(no_network):
    e = Embedder("sentence-transformers/all-MiniLM-L6-v2")  # the hub id resolves to the packaged copy
    assert e.name == DEFAULT_EMBEDDER and Path(e.source, "modules.json").is_file()
    v = e.encode(["a man riding a horse", "a person on a horse", "a bowl of fruit"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.linalg.norm(v, axis=1) == pytest.approx(1, abs=1e-5)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]
    assert e.encode_query("person").shape == (384,)


def test_mean_pool_fast_path_gives_sentence_transformers_vectors(no_network):
    from sentence_transformers import SentenceTransformer

    from mllm_retrieval.search.embedding import MeanPoolEncoder, packaged_model_path

    texts = ["a red motorcycle in a garage " * 40, "cat", "", "é 鸽子 🐦"]
    e = Embedder()
    assert isinstance(e.model, MeanPoolEncoder)
    reference = SentenceTransformer(str(packaged_model_path())).encode(texts, normalize_embeddings=True)
    assert np.abs(e.encode(texts) - reference).max() < 1e-5


def test_unknown_models_fail_in_one_line(tmp_path, no_network):
    with pytest.raises(EmbedderError, match="cannot load embedder 'nobody/no-such-model'.*HF_HUB_OFFLINE"):
        Embedder("nobody/no-such-model").encode(["x"])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(EmbedderError, match="is a file"):
        Embedder(str(tmp_path / "file.txt"))


def test_tiny_model_folder_plumbing(tiny_st):
    e = Embedder(str(tiny_st))
    v = e.encode(["a red car", "", "a cat on a sofa"])
    assert v.shape == (3, 32) and e.dim == 32 and e.name == str(tiny_st.resolve())
    assert np.allclose(e.encode(["a red car"]), v[:1], atol=1e-6)


def test_embedding_text_puts_tags_first_once():
    units = [Unit("full", ("cat", "sofa"), "A cat sleeps."), Unit("0,0,5,5", ("sofa", "lamp"), "A lamp."),
             Unit("5,0,9,5", (), "A cat sleeps.")]
    assert embedding_text(units) == "cat, sofa, lamp. A cat sleeps. A lamp."
    assert embedding_text([Unit("full", (), "Only a caption.")]) == "Only a caption."
    assert embedding_text([Unit("full", (), " ")]) == ""


def test_adding_captions_updates_both_indexes_and_removing_an_image_removes_it_from_both(store, tiny_st):
    counting = Counting(Embedder(str(tiny_st)))
    # RRF: the only keyword match stays first whatever the random tiny model's similarities say
    s = Searcher(store, mode="hybrid", embedder=counting, fuse_with="rrf")
    a = add(store, "a", "Caption: A red car on a street.")
    b = add(store, "b", "Caption: A cat on a sofa.")
    assert {r.image_id for r in s.search("car", k=5)} == {a, b}  # semantic ranks every image
    assert len(counting.texts) == 2

    c = add(store, "c", "Tags: pigeon\nCaption: A pigeon on a bridge.")
    [top] = s.search("pigeon", k=1, mode="keyword")
    assert top.image_id == c and len(s.semantic) == 2  # keyword search does not touch the semantic index
    assert s.search("pigeon", k=1)[0].image_id == c and len(s.semantic) == 3
    assert counting.texts[2:] == ["pigeon. A pigeon on a bridge."]  # only the new image was embedded

    store.db.execute("UPDATE images SET status = 'missing' WHERE id = ?", [c])
    for mode in fusion.MODES:
        assert c not in {r.image_id for r in s.search("pigeon bridge", k=10, mode=mode)}
    assert len(s.semantic) == 2 and c not in s.semantic.row_of and c not in s.index.doc_of
    store.db.execute("UPDATE images SET status = 'ok' WHERE id = ?", [c])
    assert s.search("pigeon", k=1)[0].image_id == c
    assert len(counting.texts) == 3  # its text did not change: the old vector came back without embedding


def test_index_is_saved_loaded_and_resumes_a_killed_build(tmp_path, tiny_st, monkeypatch):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        for n in range(7):
            add(store, f"img{n}", f"Caption: picture number {n} of a red car.")
    monkeypatch.setattr(semantic_index, "CHUNK", 3)

    class Dies(Counting):
        def encode(self, texts, progress=False, query=False):
            if len(self.texts) >= 3 and not query:
                raise KeyboardInterrupt
            return super().encode(texts, progress, query)

    dying = Dies(Embedder(str(tiny_st)))
    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        SemanticIndex(store, embedder=dying).sync()
    assert len(dying.texts) == 3  # one chunk was embedded and saved before the kill

    counting = Counting(Embedder(str(tiny_st)))
    with Store(db) as store:
        index = SemanticIndex(store, embedder=counting)
        assert index.sync() == 4 and len(counting.texts) == 4 and len(index) == 7
        vectors = index.vectors.copy()
    with Store(db) as store:
        again = SemanticIndex(store, embedder=counting)
        assert again.sync() == 0 and np.array_equal(again.vectors, vectors)
        add(store, "new", "Caption: a cat.")
        assert again.sync() == 1 and counting.texts[-1] == "a cat."
    with Store(db) as store:  # the appended row was saved too
        assert SemanticIndex(store, embedder=counting).sync() == 0 and len(counting.texts) == 5
    suffixes = sorted(p.name.split(".semantic-")[1].split(".", 1)[1] for p in tmp_path.glob("*.semantic-*"))
    assert suffixes == ["0.f32", "npz", "npz.lock"]  # rows, sidecar, and the lock two processes share

    next(tmp_path.glob("*.semantic-*.npz")).write_bytes(b"not an npz")
    with Store(db) as store:
        assert SemanticIndex(store, embedder=counting).sync() == 8  # damaged: embedded again, not trusted


def test_dead_rows_are_compacted(tmp_path, monkeypatch):
    monkeypatch.setattr(semantic_index, "COMPACT_MIN", 2)
    fake = Counting(FakeEmbedder())
    with Store(tmp_path / "lib.db") as store:
        ids = [add(store, f"i{n}", f"Caption: a cat number {n}.") for n in range(6)]
        index = SemanticIndex(store, embedder=fake)
        index.sync()
        for i in ids[:4]:
            store.db.execute("UPDATE images SET status = 'missing' WHERE id = ?", [i])
        index.sync()
        assert index.n == 2 and sorted(index.row_of) == ids[4:]
        assert [i for i, _ in index.search(FakeEmbedder().encode_query("cat"), 5)] == ids[4:]
    assert len(list(tmp_path.glob("*.f32"))) == 1
    with Store(tmp_path / "lib.db") as store:
        cat = FakeEmbedder().encode_query("cat")
        assert sorted(SemanticIndex(store, embedder=fake).scores(cat)[0].tolist()) == ids[4:]


def test_cli_modes(tmp_path, tiny_st):
    db = tmp_path / "demo.db"
    assert runner.invoke(app, ["demo", "--db", str(db)]).exit_code == 0
    r = runner.invoke(app, ["search", "cat", "--mode", "semantic", "--more-meaning", "--embedder",
                            str(tiny_st), "--json", "--db", str(db)])
    assert r.exit_code == 0, r.output
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(hits) == 10 and {h["via"] for h in hits} <= {"meaning", "both"}
    assert all(h["similarity"] is not None and h["bm25"] is None for h in hits)
    r = runner.invoke(app, ["search", "cat", "-k", "3", "--embedder", str(tiny_st), "--db", str(db)])
    assert r.exit_code == 0 and "chelsea.png  [cat]  both" in r.stdout  # hybrid is the CLI default
    r = runner.invoke(app, ["search", "cat", "--mode", "fuzzy", "--db", str(db)])
    assert r.exit_code == 2 and "fuzzy" in r.output


@pytest.fixture
def cats_and_dogs(tmp_path) -> tuple[Path, Path]:
    labels = {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(1, 7)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": n, "image_id": i, "category_id": c, "iscrowd": 0}
                        for n, (i, c) in enumerate([(1, 1), (2, 1), (3, 2), (4, 2), (5, 1)], 1)],
    }
    captions = {"annotations": [{"id": i, "image_id": i, "caption": c} for i, c in enumerate(
        ["a cat on a sofa", "a kitten sleeps", "a dog runs", "a puppy and a cat", "the and of"], 1)]}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    return tmp_path / "labels.json", tmp_path / "captions.json"


def test_eval_modes_and_expansions_are_separate_labelled_conditions(cats_and_dogs, tiny_st):
    labels, captions = cats_and_dogs
    report = run_eval(EvalConfig(annotations=labels, captions=captions, modes=["hybrid,semantic"], prf=True,
                                 expand=True, embedder=str(tiny_st), progress=False))
    got = [(c.mode, c.expand, c.prf) for c in report.conditions]
    assert got == [("keyword", False, False), ("keyword", True, False), ("keyword", False, True),
                   ("hybrid", False, False), ("semantic", False, False)]
    labels_ = [c.label for c in report.conditions]
    assert "+PRF (--prf)" in labels_[2]
    assert labels_[3].endswith(f"hybrid CombMNZ min-max +feedback [{tiny_st.resolve()}]")
    keyword, hybrid, semantic = report.conditions[0], report.conditions[3], report.conditions[4]
    # "the and of" has text but no searchable word: semantic ranks it, keyword cannot
    assert keyword.n_with_document == 4 and semantic.n_with_document == 5
    assert semantic.no_match_share == pytest.approx(1 / 6)  # only the image without any caption
    assert hybrid.n_with_document == 5 and hybrid.summary["n_evaluated"] == 2
    with pytest.raises(Exception, match="unknown ranking mode"):
        run_eval(EvalConfig(annotations=labels, captions=captions, modes=["fuzzy"], progress=False))


def test_eval_hybrid_is_rrf_of_the_keyword_and_semantic_scores():
    keyword = np.array([[2.0, -np.inf, 1.0], [-np.inf, -np.inf, 3.0]])
    semantic = np.array([[0.1, 0.9, 0.5], [0.2, 0.3, 0.1]])
    out = hybrid_matrix(keyword, semantic)
    assert out[0].tolist() == pytest.approx([1 / 61 + 1 / 63, 1 / 61, 2 / 62])
    assert out[1].tolist() == pytest.approx([1 / 62, 1 / 61, 1 / 61 + 1 / 63])


def test_keyword_search_imports_neither_torch_nor_sentence_transformers():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mllm_retrieval.cli import app\n"
        "from mllm_retrieval.capture.parsing import parse_output\n"
        "from mllm_retrieval.search.searcher import Searcher\n"
        "from mllm_retrieval.library.store import Store\n"
        "s = Store(memory=True)\n"
        "run = s.get_or_create_run('t', 'm', {})\n"
        "[(tile, _)] = s.ensure_tiles(s.add_image('sha', '/a.jpg', 1, 1), [None], 1, 1)\n"
        "s.add_captions(run.id, [(tile, 'x', parse_output('Caption: a cat.'), None)])\n"
        "assert [r.image_id for r in Searcher(s, mode='keyword').search('cat')] == [1]\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_two_processes_writing_the_same_index_leave_it_consistent(tmp_path):
    from mllm_retrieval.search.documents import embedding_texts

    fake = FakeEmbedder()
    with Store(tmp_path / "lib.db") as store:
        add(store, "a", "Caption: a cat.")
        first, second = SemanticIndex(store, embedder=fake), SemanticIndex(store, embedder=fake)
        first.sync()
        second.sync()  # loads what the first saved
        add(store, "b", "Caption: a dog.")
        first.sync()  # appends b's row
        add(store, "c", "Caption: a red car.")
        second.sync()  # did not see the first's append: writes its own generation
        fresh = SemanticIndex(store, embedder=fake)
        fresh.sync()
        texts = embedding_texts(store.tile_texts())
        assert sorted(fresh.row_of) == sorted(texts)
        for image_id, row in fresh.row_of.items():
            assert np.allclose(fresh.vectors[row], fake.encode([texts[image_id]])[0])
    assert len(list(tmp_path.glob("*.f32"))) == 1
