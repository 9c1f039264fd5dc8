"""Ranked-retrieval metrics: hand-computed cases, an sklearn cross-check and hypothesis properties."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mllm_retrieval.evaluation.metrics import (
    ClassResult,
    average_precision,
    class_result,
    interpolated_curve,
    micro_ap,
    pr_auc,
    pr_curve,
    random_baseline,
    summarize,
    tie_stats,
)

NEG_INF = float("-inf")

# Running example, no ties: ranks 1..4 with relevance 1,0,1,0 (2 relevant).
#   rank 1: tp=1 P=1/1 R=1/2;  rank 2: tp=1 P=1/2 R=1/2;  rank 3: tp=2 P=2/3 R=1;  rank 4: tp=2 P=2/4 R=1
SCORES = [0.9, 0.8, 0.7, 0.6]
RELEVANT = [1, 0, 1, 0]


def test_pr_curve_points_in_descending_threshold_order():
    curve = pr_curve(SCORES, RELEVANT)
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(curve.recall, [1 / 2, 1 / 2, 1, 1])


def test_pr_curve_is_frozen_and_read_only():
    curve = pr_curve(SCORES, RELEVANT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        curve.precision = np.zeros(4)
    with pytest.raises(ValueError):
        curve.recall[0] = 0.0


def test_average_precision_hand_computed():
    # AP = sum (R_n - R_{n-1}) P_n = (1/2)(1) + (0)(1/2) + (1/2)(2/3) + (0)(2/4) = 0.8333...
    assert average_precision(SCORES, RELEVANT) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(SCORES, RELEVANT) == pytest.approx(0.833333, abs=1e-6)


def test_input_types_bool_lists_and_arrays_agree():
    as_bool = np.array(RELEVANT, dtype=bool)
    as_float = np.array(RELEVANT, dtype=float)
    expected = average_precision(SCORES, RELEVANT)
    assert average_precision(np.array(SCORES), as_bool) == expected
    assert average_precision(tuple(SCORES), as_float) == expected


# Tie block example: scores 0.9 | 0.5 0.5 0.5 0.5 | 0.1 with relevance 0 | 1 1 0 0 | 1 (3 relevant).
#   block {0.9}:        tp=0 n=1 P=0   R=0
#   block {0.5 x4}:     tp=2 n=5 P=2/5 R=2/3   (one step: both relevant items credited P=2/5)
#   block {0.1}:        tp=3 n=6 P=1/2 R=1
#   AP = (2/3)(2/5) + (1/3)(1/2) = 4/15 + 1/6 = 13/30 = 0.4333...  (sklearn gives the same)
#   optimistic tie order (relevant at ranks 2,3): (1/3)(1/2 + 2/3 + 3/6) = 0.5556
#   pessimistic tie order (relevant at ranks 4,5): (1/3)(1/4 + 2/5 + 3/6) = 0.3833
TIE_SCORES = [0.9, 0.5, 0.5, 0.5, 0.5, 0.1]
TIE_RELEVANT = [0, 1, 1, 0, 0, 1]


def test_tie_block_is_one_step():
    curve = pr_curve(TIE_SCORES, TIE_RELEVANT)
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.5, 0.1])
    np.testing.assert_allclose(curve.precision, [0, 2 / 5, 1 / 2])
    np.testing.assert_allclose(curve.recall, [0, 2 / 3, 1])
    ap = average_precision(TIE_SCORES, TIE_RELEVANT)
    assert ap == pytest.approx(13 / 30)
    optimistic = average_precision([0.9, 0.5, 0.49, 0.48, 0.47, 0.1], TIE_RELEVANT)
    pessimistic = average_precision([0.9, 0.47, 0.48, 0.5, 0.49, 0.1], TIE_RELEVANT)
    assert optimistic == pytest.approx((1 / 2 + 2 / 3 + 3 / 6) / 3)
    assert pessimistic == pytest.approx((1 / 4 + 2 / 5 + 3 / 6) / 3)
    assert pessimistic < ap < optimistic


def test_tie_block_result_does_not_depend_on_input_order():
    order = [5, 3, 1, 0, 4, 2]
    permuted = average_precision(np.take(TIE_SCORES, order), np.take(TIE_RELEVANT, order))
    assert permuted == average_precision(TIE_SCORES, TIE_RELEVANT)


def test_tie_block_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    expected = metrics.average_precision_score(TIE_RELEVANT, TIE_SCORES)
    assert expected == pytest.approx(13 / 30)
    assert average_precision(TIE_SCORES, TIE_RELEVANT) == pytest.approx(expected)


def test_all_relevant_tie_block_is_credited_block_end_precision():
    # 1 1 | 0.5 0.5 with relevance 0 0 | 1 1: one point P = 2/4, R = 1 -> AP = 0.5 (sklearn agrees).
    # Any ordering inside the blocks ranks the relevant items 3rd and 4th: (1/3 + 2/4)/2 = 0.4167,
    # so the tie-block convention scores above every possible ordering here.
    assert average_precision([1, 1, 0.5, 0.5], [0, 0, 1, 1]) == pytest.approx(0.5)
    assert average_precision([1, 0.9, 0.5, 0.4], [0, 0, 1, 1]) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_one_tie_block_scores_the_random_baseline():
    # Everything tied (an uninformative scorer): one point P = prevalence, R = 1 -> AP = 2/5.
    relevant = [1, 0, 0, 1, 0]
    assert average_precision([0.0] * 5, relevant) == pytest.approx(2 / 5)
    assert random_baseline(relevant) == pytest.approx(2 / 5)


def test_all_relevant_gives_one():
    assert average_precision([0.3, 0.2, 0.1], [1, 1, 1]) == 1.0
    assert pr_auc([0.3, 0.2, 0.1], [1, 1, 1]) == 1.0
    assert average_precision([0.5, 0.5, 0.5], [True, True, True]) == 1.0
    assert pr_auc([0.5, 0.5, 0.5], [True, True, True]) == 1.0


def test_relevant_ranked_last():
    # Points (R, P): (0, 0), (0, 0), (0, 0), (1, 1/4) -> AP = (1)(1/4) = 0.25.
    # PR-AUC: anchor (0, 0) [first point's precision], trapezoid from (0, 0) to (1, 1/4) = 1 * (0 + 1/4)/2.
    assert average_precision(SCORES, [0, 0, 0, 1]) == pytest.approx(0.25)
    assert pr_auc(SCORES, [0, 0, 0, 1]) == pytest.approx(0.125)


def test_no_relevant_gives_nan_everywhere():
    relevant = [0, 0, 0, 0]
    assert math.isnan(average_precision(SCORES, relevant))
    assert math.isnan(pr_auc(SCORES, relevant))
    assert np.isnan(interpolated_curve(SCORES, relevant)).all()
    assert np.isnan(pr_curve(SCORES, relevant).recall).all()
    assert random_baseline(relevant) == 0.0


def test_minus_inf_items_are_retrieved_last():
    # 0.9 (irrelevant) | 0.5 (relevant) | -inf x2 (one relevant, one not), 2 relevant in all.
    #   tp=0 n=1 P=0 R=0;  tp=1 n=2 P=1/2 R=1/2;  tp=2 n=4 P=1/2 R=1  -> AP = (1/2)(1/2) + (1/2)(1/2) = 0.5
    scores = [0.9, NEG_INF, 0.5, NEG_INF]
    relevant = [0, 1, 1, 0]
    curve = pr_curve(scores, relevant)
    assert curve.thresholds[-1] == NEG_INF
    assert curve.recall[-1] == 1.0
    np.testing.assert_allclose(curve.precision, [0, 1 / 2, 1 / 2])
    assert average_precision(scores, relevant) == pytest.approx(0.5)
    # Same as giving the unmatched items the lowest finite score.
    assert average_precision([0.9, -1.0, 0.5, -1.0], relevant) == average_precision(scores, relevant)


def test_relevant_item_with_no_match_still_counts():
    # 0.3 (irrelevant) | -inf x2 with one relevant: tp=1 n=3 P=1/3 R=1 -> AP = 1/3, not 0 and not NaN.
    assert average_precision([0.3, NEG_INF, NEG_INF], [0, 0, 1]) == pytest.approx(1 / 3)


def test_pr_auc_trapezoid_hand_computed():
    # Running example points (R, P): (1/2, 1), (1/2, 1/2), (1, 2/3), (1, 1/2); anchor (0, 1).
    #   (0,1)->(1/2,1): 1/2 * (1 + 1)/2 = 0.5
    #   (1/2,1)->(1/2,1/2): width 0
    #   (1/2,1/2)->(1,2/3): 1/2 * (1/2 + 2/3)/2 = 0.291667
    #   (1,2/3)->(1,1/2): width 0           total = 0.791667 (below AP = 0.8333 here)
    assert pr_auc(SCORES, RELEVANT) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert pr_auc(SCORES, RELEVANT) == pytest.approx(0.791667, abs=1e-6)


def test_pr_auc_anchor_uses_first_precision():
    # Points (1/2, 1/2), (1, 1/2) [0.9 irrelevant, 0.5 relevant tie block]; anchor (0, 1/2) -> area 1/2.
    # (sklearn's curve would start at (0, 1) and give 0.625 instead.)
    scores, relevant = [0.9, 0.9, 0.5, 0.5], [1, 0, 1, 0]
    np.testing.assert_allclose(pr_curve(scores, relevant).recall, [1 / 2, 1])
    assert pr_auc(scores, relevant) == pytest.approx(0.5)


def test_interpolated_curve_hand_computed():
    # Running example: max precision at recall >= r: r<=1/2 -> 1, 1/2<r<=1 -> 2/3.
    levels = [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(interpolated_curve(SCORES, RELEVANT, levels), [1, 1, 1, 2 / 3, 2 / 3])
    default = interpolated_curve(SCORES, RELEVANT)
    assert default.shape == (101,)
    assert (np.diff(default) <= 0).all()


def test_interpolated_curve_rejects_bad_levels():
    with pytest.raises(ValueError, match="recall_levels"):
        interpolated_curve(SCORES, RELEVANT, [0.0, 1.5])


def test_random_baseline_is_prevalence():
    assert random_baseline([1, 0, 0, 0]) == 0.25
    assert random_baseline(np.array([True, True, False, False])) == 0.5


def test_random_baseline_matches_mean_ap_of_random_rankings():
    rng = np.random.default_rng(0)
    relevant = np.zeros(200, dtype=bool)
    relevant[:20] = True
    aps = [average_precision(rng.random(200), relevant) for _ in range(300)]
    assert np.mean(aps) == pytest.approx(random_baseline(relevant), abs=0.03)


def test_summarize_macro_means_and_skipped_classes():
    results = [
        ClassResult("pigeon", 2, 1.0, 0.9, 0.1),
        ClassResult("bridge", 1, 0.5, 0.4, 0.3),
        ClassResult("unicorn", 0, math.nan, math.nan, 0.0),
    ]
    summary = summarize(results)
    assert summary["n_classes"] == 3
    assert summary["n_evaluated"] == 2
    assert summary["n_skipped_no_relevant"] == 1
    assert summary["skipped"] == ["unicorn"]
    assert summary["macro_ap"] == pytest.approx(0.75)
    assert summary["macro_pr_auc"] == pytest.approx(0.65)
    assert summary["macro_prevalence"] == pytest.approx(0.2)


def test_summarize_nothing_evaluable():
    summary = summarize([ClassResult("unicorn", 0, math.nan, math.nan, 0.0)])
    assert summary["n_evaluated"] == 0 and summary["n_skipped_no_relevant"] == 1
    assert math.isnan(summary["macro_ap"])


def test_macro_versus_micro():
    # q1: 0.9 (rel), 0.1 -> AP 1;  q2: 0.8, 0.2 (rel) -> AP 1/2;  macro = 0.75.
    # pooled ranking: 0.9 rel, 0.8, 0.2 rel, 0.1 -> micro AP = (1/2)(1) + (1/2)(2/3) = 0.8333.
    scores = [np.array([0.9, 0.1]), np.array([0.8, 0.2])]
    relevant = [np.array([1, 0]), np.array([0, 1])]
    results = [class_result(f"q{i}", s, r) for i, (s, r) in enumerate(zip(scores, relevant, strict=True))]
    assert [r.ap for r in results] == [1.0, 0.5]
    assert summarize(results)["macro_ap"] == pytest.approx(0.75)
    assert micro_ap(scores, relevant) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_class_result_fields():
    result = class_result("pigeon", SCORES, RELEVANT)
    assert result.name == "pigeon" and result.n_relevant == 2
    assert result.ap == pytest.approx(0.833333, abs=1e-6)
    assert result.pr_auc == pytest.approx(0.791667, abs=1e-6)
    assert result.prevalence == 0.5


def test_micro_ap_validation():
    with pytest.raises(ValueError, match="score arrays"):
        micro_ap([np.array([0.1])], [])
    with pytest.raises(ValueError, match="no queries"):
        micro_ap([], [])


def test_tie_stats():
    assert tie_stats([0.9, 0.5, 0.5, 0.1, 0.1, 0.1]) == (5, 3)
    assert tie_stats([0.3, 0.2, 0.1]) == (0, 1)
    stats = tie_stats([NEG_INF, NEG_INF, 1.0])
    assert stats.n_tied_items == 2 and stats.largest_tie_block == 2


@pytest.mark.parametrize(
    "scores,relevant,message",
    [
        ([0.1, 0.2], [1], "differ in length"),
        ([0.1, 0.2], [1, 2], "0/1"),
        ([0.1, 0.2], [1, 0.5], "0/1"),
        ([0.1, 0.2], ["yes", "no"], "0/1"),
        ([0.1, float("nan")], [1, 0], "NaN"),
        ([0.1, float("inf")], [1, 0], r"\+inf"),
        (["a", "b"], [1, 0], "real numbers"),
        ([[0.1, 0.2]], [[1, 0]], "1-D"),
        ([], [], "empty"),
    ],
)
def test_validation_errors(scores, relevant, message):
    with pytest.raises(ValueError, match=message):
        average_precision(scores, relevant)


def test_validation_errors_other_functions():
    with pytest.raises(ValueError, match="0/1"):
        random_baseline([0, 3])
    with pytest.raises(ValueError, match="NaN"):
        tie_stats([float("nan")])
    with pytest.raises(ValueError, match="differ in length"):
        pr_auc([0.1], [1, 0])


def test_cross_check_with_sklearn_on_heavily_tied_data():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(12345)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 5, size=n).astype(float)  # at most 5 distinct values: many ties
        relevant = rng.random(n) < rng.uniform(0.05, 0.9)
        if not relevant.any():
            continue
        assert average_precision(scores, relevant) == pytest.approx(
            metrics.average_precision_score(relevant, scores), abs=1e-12
        )
        precision, recall, thresholds = metrics.precision_recall_curve(
            relevant, scores, drop_intermediate=False
        )
        curve = pr_curve(scores, relevant)
        # sklearn: ascending thresholds, plus a final (P=1, R=0) point without a threshold.
        np.testing.assert_array_equal(curve.thresholds, thresholds[::-1])
        np.testing.assert_allclose(curve.precision, precision[:-1][::-1])
        np.testing.assert_allclose(curve.recall, recall[:-1][::-1])
        if curve.precision[0] == 1.0:  # then the anchor coincides with sklearn's (0, 1) end point
            assert pr_auc(scores, relevant) == pytest.approx(metrics.auc(recall, precision), abs=1e-12)


score_values = st.sampled_from([NEG_INF, 0.0, 0.25, 0.5, 1.0, 3.0]) | st.floats(-5, 5)


@st.composite
def scored_items(draw):
    n = draw(st.integers(1, 40))
    scores = draw(st.lists(score_values, min_size=n, max_size=n))
    relevant = draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(any))
    return np.array(scores), np.array(relevant)


@given(scored_items())
def test_property_bounds_and_order_independence(items):
    scores, relevant = items
    ap = average_precision(scores, relevant)
    area = pr_auc(scores, relevant)
    assert 0.0 <= ap <= 1.0 + 1e-12
    assert 0.0 <= area <= 1.0 + 1e-12
    assert pr_curve(scores, relevant).recall[-1] == 1.0
    assert average_precision(scores[::-1], relevant[::-1]) == pytest.approx(ap, abs=1e-12)
    interp = interpolated_curve(scores, relevant)
    assert (np.diff(interp) <= 0).all()
    assert ((interp >= 0) & (interp <= 1)).all()


@given(
    st.lists(st.floats(1, 2), min_size=1, max_size=20),
    st.lists(st.floats(-1, 0.99) | st.just(NEG_INF), max_size=20),
)
def test_property_perfect_ranking_scores_one(relevant_scores, other_scores):
    scores = np.array(other_scores + relevant_scores)
    relevant = np.array([False] * len(other_scores) + [True] * len(relevant_scores))
    assert average_precision(scores, relevant) == pytest.approx(1.0, abs=1e-12)
    assert pr_auc(scores, relevant) == pytest.approx(1.0, abs=1e-12)
