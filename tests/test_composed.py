"""Composed image retrieval: edit parsing, composition, recall metrics, CIRR-format CLI run, real data."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from typer.testing import CliRunner

from mllm_retrieval.cli import app
from mllm_retrieval.composed.benchmarks import load_cirr
from mllm_retrieval.composed.edits import REF_WEIGHT, compose, parse_edit
from mllm_retrieval.composed.evaluate import demote, evaluate_split, expected_recall
from mllm_retrieval.search.text import stem

COMPOSED = SHARED / "composed"


@pytest.mark.parametrize("text, add, remove", [
    ("no dog", (), ("dog",)),
    ("without the dog", (), ("dog",)),
    ("remove the umbrella", (), ("umbrella",)),
    ("get rid of the people", (), ("person",)),
    ("the leash removed", (), ("leash",)),
    ("with the leash removed", (), ("leash",)),
    ("not blue but red", ("red",), ("blue",)),
    ("it is not blue", (), ("blue",)),
    ("doesn't have sleeves", (), ("sleeve",)),
    ("Dog is not wearing a collar", ("dog",), ("collar",)),
    ("no longer has a hat", (), ("hat",)),
    ("red instead of blue", ("red",), ("blue",)),
    ("has long sleeves instead of short sleeves", ("long", "sleeve"), ("short",)),
    ("change the car to a truck", ("truck",), ("car",)),
    ("turn the cat into a dog", ("dog",), ("cat",)),
    ("replace the cat with a dog", ("dog",), ("cat",)),
    ("cat -> dog", ("dog",), ("cat",)),
    ("add a hat", ("hat",), ()),
    ("with two people", ("two", "person"), ()),
    ("make the dress red", ("dress", "red"), ()),
    ("is shiny and silver", ("shiny", "silver"), ()),
    ("show three bottles of soft drink", ("three", "bottle", "soft", "drink"), ()),
])
def test_parse_edit_phrasings(text, add, remove):
    e = parse_edit(text)
    assert set(e.add) == {stem(w) for w in add} and set(e.remove) == {stem(w) for w in remove}, e


@pytest.mark.parametrize("text, add, remove", [
    ("a dog with no leash", ("dog",), ("leash",)),  # the attribute is negated, not the dog
    ("a dog with no leash on the grass", ("dog", "grass"), ("leash",)),
    ("no people in the background", ("background",), ("person",)),
    ("no dog and a cat", ("cat",), ("dog",)),  # "a cat" is not under the negation
    ("without the dog or cat", (), ("dog", "cat")),  # a bare noun shares it
    ("without the leash and on the beach", ("beach",), ("leash",)),
    ("has no sleeves and is red", ("red",), ("sleeve",)),
    ("a notebook on a nodding dog", ("notebook", "nodding", "dog"), ()),  # no/not inside words
    ("two more birds and one without touching the water", ("two", "bird"), ("touching",)),  # the act
    ("dog not facing the camera", ("dog",), ("facing",)),
    ("without wearing a hat", (), ("hat",)),  # possession passes the negation to the thing
    ("without seeing the mountain peaks", (), ("mountain", "peak")),
    ("no railing", (), ("railing",)),  # an -ing thing, not an action
])
def test_negation_scope(text, add, remove):
    e = parse_edit(text)
    assert set(e.add) == {stem(w) for w in add} and set(e.remove) == {stem(w) for w in remove}, e


def test_keep_hints_are_never_removed():
    e = parse_edit("keep the dog, remove the cat")
    assert e.keep_hint == ("dog",) and "dog" in e.add and e.remove == ("cat",)
    assert parse_edit("same color but no sleeves").keep_hint == ("color",)
    assert parse_edit("") == parse_edit(None)  # never raises


def test_compose_kept_dropped_added():
    cq = compose("a brown dog on a leash in the park", "without the leash and on the beach")
    assert cq.kept == ("brown", "dog", "park") and cq.dropped == ("leash",) and cq.added == ("beach",)
    assert cq.exclude == ("leash",)
    assert dict(zip(cq.terms, cq.weights, strict=True)) == {
        "beach": 1.0, "brown": REF_WEIGHT, "dog": REF_WEIGHT, "park": REF_WEIGHT}
    cq = compose("a blue car", "red instead of blue")
    assert cq.terms == ("red", "car") and cq.dropped == ("blue",) and cq.exclude == ("blue",)
    assert cq.text == "red car"
    # a word both removed and added again is not excluded
    assert compose("a cat", "replace the cat with a cat").exclude == ()


def test_expected_recall_by_hand():
    s = np.array([5.0, 3.0, 3.0, 1.0, -np.inf, -np.inf])
    assert expected_recall(s, 0, (1, 2)) == {1: 1.0, 2: 1.0}
    assert expected_recall(s, 1, (1, 2, 3)) == {1: 0.0, 2: 0.5, 3: 1.0}  # tied with item 2
    assert expected_recall(s, 3, (3, 4)) == {3: 0.0, 4: 1.0}
    assert expected_recall(s, 4, (4, 5, 6)) == {4: 0.0, 5: 0.5, 6: 1.0}  # no-match block of two
    allowed = np.array([False, True, True, True, True, True])  # item 0 (the reference) removed
    assert expected_recall(s, 3, (2, 3), allowed) == {2: 0.0, 3: 1.0}
    subset = np.array([False, False, True, True, False, False])
    assert expected_recall(s, 3, (1, 2), subset) == {1: 0.0, 2: 1.0}


def test_demote_pushes_excluded_below_every_other_match():
    s = np.array([10.0, 2.0, 1.0, -np.inf])
    d = demote(s, np.array([True, False, False, True]))
    assert list(np.argsort(-d)) == [1, 2, 0, 3] and d[3] == -np.inf


def _tiny_cirr(root: Path) -> None:
    """A 6-image CIRR-format set with BLIP-2-style captions and two queries."""
    caps = {
        "ref-a": "a brown dog on a leash in a park",
        "tgt-a": "a brown dog running on a beach",
        "oth-a": "a brown dog on a leash on a beach",
        "ref-b": "a red car parked on a street",
        "tgt-b": "a blue car parked on a street",
        "oth-b": "a red car and a red bus on a street",
    }
    members = list(caps)
    queries = [
        {"pairid": 1, "reference": "ref-a", "target_hard": "tgt-a", "target_soft": {"tgt-a": 1.0},
         "caption": "without the leash and on the beach", "img_set": {"id": 1, "members": members}},
        {"pairid": 2, "reference": "ref-b", "target_hard": "tgt-b", "target_soft": {"tgt-b": 1.0},
         "caption": "blue instead of red", "img_set": {"id": 2, "members": members}},
    ]
    (root / "cirr" / "dqu_cir_blip2").mkdir(parents=True)
    (root / "cirr" / "cap.rc2.val.json").write_text(json.dumps(queries))
    (root / "cirr" / "split.rc2.val.json").write_text(json.dumps({k: f"./dev/{k}.png" for k in caps}))
    (root / "cirr" / "dqu_cir_blip2" / "image_captions_cirr_val.json").write_text(json.dumps(caps))


def test_edit_aware_ranking_and_reference_exclusion(tmp_path):
    _tiny_cirr(tmp_path)
    bench = load_cirr(tmp_path)
    rows = evaluate_split(bench.splits[0], bench, ["keyword"])["rows"]
    assert rows["edit / keyword"]["R@1"] == 100.0  # leash/red demoted, so both targets come first
    assert rows["ref / keyword"]["R@1"] < 100.0  # the reference itself is never a result
    assert rows["edit / keyword"]["Rs@1"] == 100.0


def test_cli_composed_end_to_end(tmp_path):
    from tiny_embedder import build_tiny_sentence_transformer

    _tiny_cirr(tmp_path / "data")
    model = build_tiny_sentence_transformer(tmp_path / "tiny-st")
    out, md = tmp_path / "out", tmp_path / "R.md"
    args = ["eval-composed", "--dataset", "cirr", "--data-dir", str(tmp_path / "data"),
            "--modes", "keyword,semantic,hybrid", "--embedder", str(model), "--device", "cpu",
            "--out", str(out), "--results-md", str(md), "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output + str(r.exception)
    result = json.loads((out / "results.json").read_text())
    rows = result["splits"]["val"]["rows"]
    modes = ("keyword", "semantic", "hybrid")
    expected = {f"{c} / {m}" for c in ("mod", "ref", "ref+mod") for m in modes}
    assert set(rows) == expected | {"edit / keyword", "edit / hybrid"}
    assert all(0.0 <= v <= 100.0 for row in rows.values() for v in row.values())
    assert "edit / hybrid" in r.stdout and "R@50" in r.stdout
    text = md.read_text()
    assert text.count("<!-- BEGIN mllmret-eval composed-") == 1 and "other captioners than ours" in text
    old_spelling = ["eval", "--task", "composed", *args[1:]]
    r = CliRunner().invoke(app, old_spelling)  # rerun replaces its own section
    assert r.exit_code == 0 and md.read_text().count("<!-- BEGIN mllmret-eval composed-") == 1
    assert "--task composed is deprecated: use `mllmret eval-composed`" in r.output
    assert json.loads((out / "results.json").read_text())["splits"]["val"]["rows"] == rows
    r = CliRunner().invoke(app, ["eval-composed", "--dataset", "circo", "--data-dir",
                                 str(tmp_path / "data"), "--out", str(out)])
    assert r.exit_code == 1 and "cirr" in r.output


def test_real_cirr_val_bm25_is_in_the_readme_ballpark():
    if not (COMPOSED / "cirr" / "cap.rc2.val.json").exists():
        pytest.skip(f"{COMPOSED} not found")
    bench = load_cirr(COMPOSED, "blip2")
    split = bench.splits[0]
    assert len(split.queries) > 3000 and len(split.gallery) == 2297
    rows = evaluate_split(split, bench, ["keyword"])["rows"]
    assert 25.0 <= rows["ref+mod / keyword"]["R@10"] <= 55.0
    assert rows["ref+mod / keyword"]["R@50"] > rows["ref+mod / keyword"]["R@10"]


def test_a_word_the_modification_repeats_is_listed_as_added_not_kept():
    cq = compose("a red long dress", "make it red and short")
    assert cq.kept == ("long", "dress") and set(cq.added) == {"red", "short"}
    assert dict(zip(cq.terms, cq.weights, strict=True))["red"] == 1.0
