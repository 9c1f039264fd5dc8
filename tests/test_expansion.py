"""Pseudo-relevance feedback on hand-computed cases, and weighted BM25 terms."""

import pytest

from mllm_retrieval.search.expansion import expanded_query, prf_terms
from mllm_retrieval.search.index.sparse_engine import SparseEngine


def test_prf_terms_weigh_tf_over_length_by_idf_and_skip_the_query():
    feedback = [["dog", "frisbee", "grass"], ["dog", "frisbee"], ["dog", "ball"]]
    idf = {"dog": 0.1, "frisbee": 2.0, "grass": 1.0, "ball": 3.0}.get
    # frisbee 2/3 + 2/2 = 1.667; ball 3/2 = 1.5; grass 1/3 = 0.333
    assert prf_terms(feedback, ["dog"], idf, n_terms=2) == ["frisbee", "ball"]
    assert prf_terms(feedback, ["dog"], idf, n_terms=10) == ["frisbee", "ball", "grass"]
    assert prf_terms([], ["dog"], idf) == []


def test_expanded_query_weights_and_dedupes():
    assert expanded_query(["dog", "dog"], ["frisbee", "dog", "ball"], 0.1) == (
        ["dog", "frisbee", "ball"], [1.0, 0.1, 0.1])


def test_weighted_terms_scale_bm25():
    engine = SparseEngine()
    engine.add([["dog", "frisbee"], ["cat"], ["frisbee"], ["bird"]])
    plain = engine.score_all(["dog", "frisbee"])
    weighted = engine.score_all(["dog", "frisbee"], [1.0, 0.5])
    only_frisbee = engine.score_all(["frisbee"])
    assert weighted[2] == pytest.approx(0.5 * only_frisbee[2])
    assert weighted[0] == pytest.approx(plain[0] - 0.5 * only_frisbee[0])
    assert weighted[1] == float("-inf")
