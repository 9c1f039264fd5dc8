"""The meaning-only cut-off: what it hides, that the ranking stays evaluation's, the flag that shows the
rest, and that `mllmret demo` prints what its printed commands print."""

from __future__ import annotations

import shlex

import numpy as np
from cli_helpers import mllmret
from test_fusion import FakeEmbedder, library, names  # noqa: F401  (fixture)

from mllm_retrieval.search import fusion
from mllm_retrieval.search.searcher import Searcher


def test_fuse_leaves_out_only_meaning_only_images_below_the_cut():
    keyword = (np.array([1, 2]), np.array([3.0, 1.0]))
    semantic = (np.array([1, 2, 3, 4]), np.array([0.1, 0.9, 0.5, 0.2]))
    everything = {f.image_id: f.score for f in fusion.fuse(keyword, semantic)}
    cut = fusion.fuse(keyword, semantic, min_meaning=0.3)
    assert [f.image_id for f in cut] == [2, 1, 3]  # 4 (0.2, meaning only) is out; 1 (0.1, keyword) stays
    assert all(f.score == everything[f.image_id] for f in cut)  # ranks still count the whole ranking


def test_relative_cut_hides_weak_meaning_only_results_and_counts_them(library):  # noqa: F811
    fake = FakeEmbedder()
    loose = Searcher(library, mode="hybrid", embedder=fake, min_similarity=-1)
    strict = Searcher(library, mode="hybrid", embedder=fake, min_similarity=-1, min_relative=0.99)
    everything, kept = loose.search("person", k=20), strict.search("person", k=20)
    best = max(r.similarity for r in everything if r.similarity is not None)
    assert all(r.via != "meaning" or r.similarity >= 0.99 * best for r in kept)
    assert {r.image_id for r in kept if r.via != "meaning"} == {r.image_id for r in everything
                                                                if r.via != "meaning"}
    assert strict.hidden == len(everything) - len(kept) > 0 and loose.hidden == 0


def test_more_meaning_shows_what_the_cut_hid(tmp_path):
    db = tmp_path / "demo.db"
    mllmret("demo", "--db", db)
    cut = mllmret("search", "helmet", "--min-similarity", "0.3", "--db", db)
    more = mllmret("search", "helmet", "--min-similarity", "0.3", "--more-meaning", "--db", db)
    assert len(more.stdout.splitlines()) > len(cut.stdout.splitlines())
    assert "--more-meaning shows them" in cut.stderr and "--more-meaning" not in more.stderr


def test_demo_prints_what_its_printed_commands_print(tmp_path):
    db = tmp_path / "demo.db"
    out = mllmret("demo", "--db", db).stdout
    blocks = out.split("\n$ ")[1:]
    assert blocks
    for block in blocks:
        command, *printed = block.strip().split("\n")
        printed = [line for line in printed if not line.startswith("Next:") and line]
        args = shlex.split(command)[2:]  # drop "mllmret search"
        r = mllmret("search", *args)
        hint = [line for line in r.stderr.splitlines() if "below the meaning cut-off" in line]
        shown = r.stdout.splitlines() + hint
        if not r.stdout:
            shown = [line for line in r.stderr.splitlines() if line]
        assert shown == printed, command
