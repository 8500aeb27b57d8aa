"""Retrieval metrics against the official code's outputs and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from sat2sound_core.common.errors import InputError
from sat2sound_core.evaluation.metrics import (
    both_directions,
    metrics_from_scores,
    positive_ranks,
    retrieval_metrics,
)


def test_matches_the_official_metric_outputs(golden_shared):
    g = golden_shared
    q, gal = g["metrics/query"].double().numpy(), g["metrics/gallery"].double().numpy()
    fwd = retrieval_metrics(q, gal, recall_at=10)
    assert fwd.key == g["metrics/key"] == "R@5" and fwd.k == float(g["metrics/k"])
    assert fwd.recall == pytest.approx(float(g["metrics/q2g_normalized/recall"]), abs=1e-12)
    assert fwd.median_rank == pytest.approx(float(g["metrics/q2g_normalized/median_rank"]), abs=1e-12)
    assert fwd.recall == pytest.approx(float(g["metrics/q2g_unnormalized_input/recall"]), abs=1e-12)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = gal / np.linalg.norm(gal, axis=1, keepdims=True)
    np.testing.assert_allclose(positive_ranks(qn @ gn.T), g["metrics/q2g_normalized/ranks_harness"].numpy())
    back = retrieval_metrics(gal, q, recall_at=10)
    assert back.recall == pytest.approx(float(g["metrics/g2q_normalized/recall"]), abs=1e-12)
    assert back.median_rank == pytest.approx(float(g["metrics/g2q_normalized/median_rank"]), abs=1e-12)
    a, b = both_directions(q, gal)
    assert (a.recall, b.recall) == (fwd.recall, back.recall)


def test_ties_share_their_average_rank():
    s = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0], [5.0, 5.0, 0.0]])
    # row 0: three-way tie at the top -> (1+2+3)/3 = 2; row 1: one larger -> 2; row 2: two larger -> 3
    np.testing.assert_allclose(positive_ranks(s), [2.0, 2.0, 3.0])


def test_recall_uses_a_strict_fractional_k_and_median_averages_the_middle_pair():
    # ranks 1, 2, 3, 4 by construction (row i has i larger scores), N = 4
    s = np.zeros((4, 4))
    for i in range(4):
        s[i, i] = 10.0 - i
        s[i, :i] = 20.0
        s[i, i + 1:] = 0.0
    np.testing.assert_allclose(positive_ranks(s), [1, 2, 3, 4])
    m = metrics_from_scores(s, recall_at=50)  # k = 2.0: only rank 1 is strictly below it
    assert m.k == 2.0 and m.recall == 0.25 and m.key == "R@2"
    m = metrics_from_scores(s, recall_at=60)  # k = 2.4: ranks 1 and 2
    assert m.k == pytest.approx(2.4) and m.recall == 0.5 and m.key.startswith("R@2.4")
    assert m.median_rank == 2.5


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(InputError, match="square"):
        positive_ranks(np.zeros((2, 3)))
    with pytest.raises(InputError, match="empty"):
        retrieval_metrics(np.zeros((0, 4)), np.zeros((0, 4)))
    with pytest.raises(InputError, match="same"):
        retrieval_metrics(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(InputError, match="NaN"):
        retrieval_metrics(np.full((2, 2), np.nan), np.ones((2, 2)))
    with pytest.raises(InputError, match="percentage"):
        metrics_from_scores(np.eye(3), recall_at=0)
