"""The learned (TIRG-style) composer: it learns, saves and loads, and plugs into eval and `search --like`."""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mllm_retrieval.cli import app
from mllm_retrieval.composed.benchmarks import fashioniq_triplets
from mllm_retrieval.composed.composer import ComposerError, LearnedComposer, Triplet
from mllm_retrieval.composed.training import train_composer

COLOURS = {"crimson": "red", "navy": "blue", "ivory": "white", "ebony": "black", "emerald": "green",
           "lemon": "yellow", "violet": "purple", "rose": "pink"}
ITEMS = ["dress", "shirt", "skirt", "coat", "scarf", "jacket", "blouse", "gown", "vest", "hat"]
STYLES = ["long", "short", "striped", "plain", "floral", "lace", "sleeveless", "denim"]


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory) -> Path:
    from tiny_embedder import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


class BagEmbedder:
    """Bag of words with a fixed random vector per word: fast, deterministic, no model."""

    name = "bag-of-words"

    def __init__(self, dim: int = 48) -> None:
        self.dim = dim

    def _word(self, w: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim)

    def encode(self, texts, progress: bool = False, query: bool = False) -> np.ndarray:
        out = np.stack([sum((self._word(w) for w in t.lower().split()), np.zeros(self.dim)) for t in texts])
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def colour_swaps(n: int, seed: int = 0) -> list[Triplet]:
    """'a red long dress' + 'make it navy' -> 'a blue long dress': the modification's colour word never
    appears in any image text, so only a learned mapping (navy -> blue) can find the target."""
    rng = np.random.default_rng(seed)
    out = []
    names = list(COLOURS)
    for _ in range(n):
        item, style = ITEMS[rng.integers(len(ITEMS))], STYLES[rng.integers(len(STYLES))]
        old, new = rng.choice(names, 2, replace=False)
        out.append(Triplet(f"a {COLOURS[old]} {style} {item}", f"make it {new}",
                           f"a {COLOURS[new]} {style} {item}", group="all"))
    return out


def test_the_composer_learns_what_the_words_alone_cannot_say():
    composer, report = train_composer(colour_swaps(1500), BagEmbedder(), epochs=15, batch_size=64, lr=3e-3,
                                      hidden=64, holdout=0.2, progress=False)
    assert report.losses[-1] < 0.7 * report.losses[0]
    assert max(report.holdout_r10) > report.baseline_r10 + 0.2, report
    assert report.n_train + report.n_holdout == 1500 and report.n_holdout > 100
    emb = BagEmbedder()
    q = composer.query_vector(emb, "a white lace gown", "make it crimson")
    # the words alone (reference + modification) would pick the gown that says "crimson"
    gallery = ["a crimson lace gown", "a red lace gown", "a black lace gown", "a red plain coat"]
    assert gallery[int(np.argmax(emb.encode(gallery) @ q))] == "a red lace gown"
    words = emb.encode(["a white lace gown make it crimson"])[0]
    assert gallery[int(np.argmax(emb.encode(gallery) @ words))] == "a crimson lace gown"


def test_holdout_queries_share_no_reference_with_training():
    triplets = colour_swaps(400)
    _, report = train_composer(triplets, BagEmbedder(), epochs=1, hidden=8, holdout=0.25, progress=False)
    assert 0 < report.n_holdout < 400
    from mllm_retrieval.composed.training import holdout_split

    train, held = holdout_split(triplets, 0.25, 0)
    assert not {triplets[i].reference for i in train} & {triplets[i].reference for i in held}


def test_save_load_round_trip_and_bad_files(tmp_path):
    composer, _ = train_composer(colour_swaps(200), BagEmbedder(), epochs=2, hidden=16, progress=False)
    path = composer.save(tmp_path / "c.safetensors")
    again = LearnedComposer.load(path)
    r, m = BagEmbedder().encode(["a red long dress", "make it navy"])
    assert np.allclose(composer.compose_vectors(r, m), again.compose_vectors(r, m), atol=1e-6)
    assert again.embedder == "bag-of-words" and again.meta["report"]["n_train"] > 0
    with pytest.raises(ComposerError, match="no composer"):
        LearnedComposer.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ComposerError, match="cannot read"):
        LearnedComposer.load(tmp_path / "junk.safetensors")

    class Other(BagEmbedder):
        name = "another-model"

    with pytest.raises(ComposerError, match="trained on 'bag-of-words'"):
        again.query_vector(Other(), "a red dress", "make it navy")
    with pytest.raises(ComposerError, match="48-dim"):
        again.compose_vectors(np.zeros((1, 8)), np.zeros((1, 8)))


def test_too_few_queries_is_an_error():
    with pytest.raises(ComposerError, match="at least 2"):
        train_composer(colour_swaps(1), BagEmbedder(), progress=False)


def write_fashioniq(root: Path, n: int = 60) -> Path:
    """A FashionIQ-shaped folder (official/ + dqu_cir_blip2/) with colour-swap queries per category."""
    rng = np.random.default_rng(1)
    for cat in ("dress", "shirt", "toptee"):
        for split in ("train", "val"):
            texts, queries = {}, []
            for i in range(n):
                t = colour_swaps(1, seed=int(rng.integers(1 << 30)))[0]
                ref, tgt = f"{cat}-{split}-{i}-r", f"{cat}-{split}-{i}-t"
                texts[ref], texts[tgt] = t.reference, t.target
                queries.append({"candidate": ref, "target": tgt, "captions": [t.modification, "is nicer"]})
            official, captions = root / "fashioniq" / "official", root / "fashioniq" / "dqu_cir_blip2"
            official.mkdir(parents=True, exist_ok=True)
            captions.mkdir(parents=True, exist_ok=True)
            (official / f"cap.{cat}.{split}.json").write_text(json.dumps(queries))
            (official / f"split.{cat}.{split}.json").write_text(json.dumps(list(texts)))
            (captions / f"image_captions_{cat}_{split}.json").write_text(json.dumps(texts))
    return root


def test_fashioniq_triplets_read_the_train_split_only(tmp_path):
    root = write_fashioniq(tmp_path / "composed", n=5)
    triplets, files = fashioniq_triplets(root, "train")
    assert len(triplets) == 15 and all("-train-" not in t.reference for t in triplets)
    assert all(p.name.endswith(("train.json",)) for p in files)
    assert triplets[0].modification.endswith(" and is nicer") and len(triplets[0].alternatives) == 2
    assert {t.group for t in triplets} == {"dress", "shirt", "toptee"}


def test_train_composer_then_eval_with_learned_rows(tmp_path, tiny_embedder):
    root = write_fashioniq(tmp_path / "composed")
    ckpt = tmp_path / "c.safetensors"
    r = CliRunner().invoke(app, ["train-composer", "--data-dir", str(root), "-o", str(ckpt), "--epochs", "2",
                                 "--hidden", "16", "--batch-size", "16", "--embedder", str(tiny_embedder),
                                 "-q"])
    assert r.exit_code == 0, r.output
    assert ckpt.is_file() and "held-out R@10" in r.output
    assert LearnedComposer.load(ckpt).meta["trained_on"].startswith("FashionIQ train")
    md = tmp_path / "RESULTS.md"
    r = CliRunner().invoke(app, ["eval-composed", "--dataset", "fashioniq", "--data-dir",
                                 str(tmp_path), "--composer", str(ckpt), "--embedder", str(tiny_embedder),
                                 "--out", str(tmp_path / "out"), "--results-md", str(md), "-q"])
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = result["splits"]["dress"]["rows"]
    assert {"learned / semantic", "learned / hybrid", "ref+mod / keyword"} <= set(rows)
    assert 0 <= rows["learned / semantic"]["R@10"] <= 100
    assert result["composers"][0]["file"] == "c.safetensors"
    assert "| learned / hybrid |" in md.read_text() and "never on this evaluation split" in md.read_text()
    # a composer made for other vectors is refused with one line
    r = CliRunner().invoke(app, ["eval-composed", "--dataset", "fashioniq", "--data-dir",
                                 str(tmp_path), "--composer", str(ckpt), "--out", str(tmp_path / "o2"), "-q"])
    assert r.exit_code != 0 and "trained on" in r.output


def test_search_like_ranks_with_the_learned_composer(tmp_path, tiny_embedder):
    from test_search import add

    from mllm_retrieval.library.store import Store
    from mllm_retrieval.search.embedding import Embedder

    db = tmp_path / "lib.db"
    with Store(db) as store:
        ref = add(store, "ref", "Tags: red, dress\nCaption: a red long dress")
        for name, text in [("blue", "a blue long dress"), ("coat", "a green coat"), ("skirt", "a red skirt")]:
            add(store, name, f"Caption: {text}")
    composer, _ = train_composer(colour_swaps(100), Embedder(str(tiny_embedder)), epochs=1, hidden=8,
                                 progress=False)
    ckpt = composer.save(tmp_path / "c.safetensors")
    base = ["search", "--db", str(db), "--like", str(ref), "--embedder", str(tiny_embedder), "--json",
            "--composer", "learned"]
    r = CliRunner().invoke(app, [*base, "--composer-path", str(ckpt), "make it navy"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0]["reference"]["image_id"] == ref and "navy" in lines[0]["added"]
    found = [line["image_id"] for line in lines[1:]]
    assert found and ref not in found
    r = CliRunner().invoke(app, [*base, "--composer-path", str(ckpt), "--mode", "keyword", "make it navy"])
    assert r.exit_code != 0 and "ranks by meaning" in r.output
    r = CliRunner().invoke(app, [*base, "--composer-path", str(tmp_path / "no"), "x"])
    assert r.exit_code != 0 and "no composer" in r.output
    r = CliRunner().invoke(app, ["search", "--db", str(db), "--composer", "learned", "red"])
    assert r.exit_code != 0 and "goes with --like" in r.output


def test_fine_tuned_encoder_learns_saves_and_is_a_sentence_model(tmp_path, tiny_embedder):
    from mllm_retrieval.composed.composer import EncoderComposer, load_composer
    from mllm_retrieval.composed.training import finetune_encoder
    from mllm_retrieval.search.embedding import Embedder

    triplets = colour_swaps(240)
    composer, report = finetune_encoder(triplets, str(tiny_embedder), tmp_path / "enc", epochs=3,
                                        batch_size=32, lr=1e-3, holdout=0.2, progress=False, trained_on="toy")
    assert report.losses[-1] < report.losses[0] and len(report.holdout_r10) == 3
    assert 0 <= report.best_epoch <= 3  # 0: no epoch beat the untrained encoder on the held-out queries
    again = load_composer(tmp_path / "enc")
    assert isinstance(again, EncoderComposer) and again.kind == "encoder"
    assert again.meta["trained_on"] == "toy"
    assert again.query_text("a red dress", "make it navy") == "a red dress [SEP] make it navy"
    q = again.query_vectors(["a red dress"], ["make it navy"])
    assert q.shape == (1, 32) and np.isclose(np.linalg.norm(q), 1.0, atol=1e-4)
    assert np.allclose(Embedder(str(tmp_path / "enc")).encode(["a blue dress"]),
                       again.gallery_vectors(["a blue dress"]), atol=1e-5)
    with pytest.raises(ComposerError, match="its own encoder"):
        again.query_vector(BagEmbedder(), "a red dress", "make it navy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ComposerError, match="not an mllmret encoder composer"):
        load_composer(tmp_path / "empty")


def test_eval_reports_both_composers_and_search_uses_the_encoder(tmp_path, tiny_embedder):
    from test_search import add

    from mllm_retrieval.library.store import Store

    root = write_fashioniq(tmp_path / "composed", n=30)
    runner = CliRunner()
    tirg, enc = tmp_path / "c.safetensors", tmp_path / "enc"
    common = ["--data-dir", str(root), "--embedder", str(tiny_embedder), "--epochs", "1", "-q"]
    r = runner.invoke(app, ["train-composer", *common, "-o", str(tirg), "--hidden", "8"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train-composer", *common, "--kind", "encoder", "-o", str(enc),
                            "--batch-size", "16"])
    assert r.exit_code == 0, r.output
    assert "before fine-tuning" in r.output and (enc / "model.safetensors").is_file()
    r = runner.invoke(app, ["eval-composed", "--dataset", "fashioniq", "--data-dir",
                            str(tmp_path), "--composer", str(tirg), "--composer", str(enc), "--embedder",
                            str(tiny_embedder), "--out", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = result["average"]
    assert {"learned / semantic", "learned / hybrid", "finetuned / semantic", "finetuned / hybrid"} <= set(
        rows)
    assert [c["kind"] for c in result["composers"]] == ["tirg", "encoder"]
    db = tmp_path / "lib.db"
    with Store(db) as store:
        ref = add(store, "ref", "Caption: a red long dress")
        add(store, "blue", "Caption: a blue long dress")
        add(store, "coat", "Caption: a green coat")
    r = runner.invoke(app, ["search", "--db", str(db), "--like", str(ref), "--composer", "learned",
                            "--composer-path", str(enc), "--json", "make it navy"])
    assert r.exit_code == 0, r.output
    found = [json.loads(line)["image_id"] for line in r.stdout.splitlines()[1:]]
    assert found and ref not in found


def test_fine_tuning_batches_hold_one_group_never_two_equal_targets_and_draw_phrasings():
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    from mllm_retrieval.composed.training import by_group, group_datasets, query_texts

    t = Triplet("a red dress", "make it blue and shorter", "a blue dress", "dress",
                ("make it blue", "shorter"))
    assert query_texts(t, " [SEP] ") == ["a red dress [SEP] make it blue and shorter",
                                         "a red dress [SEP] make it blue", "a red dress [SEP] shorter"]
    triplets = [*colour_swaps(60), *(Triplet(x.reference, x.modification, x.target, "other", x.alternatives)
                                     for x in colour_swaps(40, seed=1))]
    data = group_datasets(triplets, by_group(triplets, range(len(triplets))), " [SEP] ", seed=0)
    assert sorted(data) == ["all", "other"] and len(data["all"]) == 60 and len(data["other"]) == 40
    drawn = {data["other"][0]["anchor"] for _ in range(30)}  # phrasings drawn anew at each read
    assert drawn == set(query_texts(triplets[60], " [SEP] "))
    rows = [data["all"][i] for i in range(60)]
    assert len({r["positive"] for r in rows}) < 60  # equal target captions exist...
    for batch in NoDuplicatesBatchSampler(data["all"], batch_size=16, drop_last=False):
        targets = [rows[i]["positive"] for i in batch]
        assert len(set(targets)) == len(targets)  # ...but never two in one batch, where one is a negative


def test_training_without_a_holdout_keeps_an_epoch_even_at_a_high_loss():
    from mllm_retrieval.composed.training import train_composer

    triplets = [Triplet("ref", "mod", f"target {i}") for i in range(8)]  # cannot be told apart: loss ~ log 8
    composer, report = train_composer(triplets, BagEmbedder(), epochs=2, batch_size=8, holdout=0.0,
                                      progress=False)
    assert report.best_epoch >= 1 and min(report.losses) > 1.0  # before: no epoch kept, a crash
    ones = np.ones((1, 48), np.float32)
    assert composer.compose_vectors(ones, ones).shape == (1, 48)
