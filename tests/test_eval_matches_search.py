"""`mllmret eval` measures what `mllmret search` ranks: the same documents, scores and order, every mode."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from mllm_retrieval.capture.parsing import Parsed
from mllm_retrieval.capture.tiling import Box
from mllm_retrieval.evaluation import runner
from mllm_retrieval.evaluation.datasets import load_coco
from mllm_retrieval.evaluation.runner import Variant, evaluate_condition
from mllm_retrieval.evaluation.sources import db_sources
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.searcher import Searcher

CLASSES = ["cat", "dog", "car", "horse", "boat", "pizza"]
OTHER = "a the person man woman red street night bridge pigeon sofa table lake snow mountain plate".split()


class BagOfWords:
    """A deterministic embedder: word counts over a fixed vocabulary, unit length rounded to 1/1024, so every
    dot product is exact in any order of summation (a real model's vectors differ in the last bits with
    how texts are batched, which breaks exact ties differently; that is float noise, not a ranking change)."""

    name = "bag-of-words"
    vocab = CLASSES + OTHER

    def encode(self, texts, progress=False, query=False):
        out = np.zeros((len(texts), len(self.vocab) + 1), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(",", " ").replace(".", " ").split():
                out[row, self.vocab.index(word) if word in self.vocab else -1] += 1
            out[row] = np.round(out[row] / max(np.linalg.norm(out[row]), 1e-9) * 1024) / 1024
        return out

    def encode_query(self, text):
        return self.encode([text], query=True)[0]


@pytest.fixture
def embedder() -> BagOfWords:
    return BagOfWords()


def build(tmp_path: Path, n: int = 30) -> tuple[Path, Path]:
    """A library of n photos with random tags and captions on the full image and one tile, and its labels."""
    rng = random.Random(7)
    db = tmp_path / "lib.db"
    with Store(db) as store:
        run = store.get_or_create_run("fake", "fake-model", {})
        for i in range(1, n + 1):
            image = store.add_image(f"{i:064x}", f"/photos/img{i}.jpg", 40, 40)
            tiles = store.ensure_tiles(image, [None, Box(0, 0, 20, 20)], 40, 40)
            units = []
            for tile, _ in tiles:
                words = rng.sample(CLASSES, rng.randint(0, 2)) + rng.sample(OTHER, rng.randint(1, 5))
                rng.shuffle(words)
                tags = tuple(rng.sample(words, min(2, len(words))))
                units.append((tile, "raw", Parsed(tags, " ".join(words) + "."), None))
            store.add_captions(run.id, units)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"img{i}.jpg"} for i in range(1, n + 1)],
        "categories": [{"id": c, "name": name} for c, name in enumerate(CLASSES, 1)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
    }))
    return db, labels


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_eval_ranks_every_class_exactly_as_search_does(tmp_path, embedder, monkeypatch, mode):
    db, labels = build(tmp_path)
    evalset = load_coco(labels)
    measured = {}
    real_measure = runner.measure

    def capture(evalset, queries, scores, condition):
        measured.update(zip(queries, scores, strict=True))
        return real_measure(evalset, queries, scores, condition)

    monkeypatch.setattr(runner, "measure", capture)
    with Store(db) as store:
        [src] = db_sources(store, evalset)
        evaluate_condition(evalset, src, Variant(), expand=False, mode=mode, embedder=embedder)
        searcher = Searcher(store, mode=mode, embedder=embedder)
        for name in CLASSES:
            eval_scores = dict(zip(evalset.image_ids, measured[name], strict=True))
            ranked = {i: s for i, s in eval_scores.items() if np.isfinite(s)}
            results = searcher.search(name, k=100)
            got = [Path(r.path).stem.removeprefix("img") for r in results]
            score = [r.similarity if mode == "semantic" else r.score for r in results]
            assert sorted(got) == sorted(ranked), name  # the same images ranked
            assert score == pytest.approx([ranked[i] for i in got], abs=1e-6), name  # with the same scores
            order = sorted(ranked, key=lambda i: (-round(ranked[i], 6), int(i)))  # ties: by image id
            assert got == order, name
            assert len(got) >= 2  # the comparison is about a ranking, not one hit
