"""Cross-modal retrieval metrics, as the official evaluation computes them.

For query ``i`` the positive is gallery item ``i``. Its rank is taken among the query's cosine scores
against the whole gallery in descending order, counting from 1, with tied scores sharing their
**average** rank. ``R@k`` is the fraction of queries whose rank is **strictly below** ``k``, where
``k = recall_at / 100 · N`` is kept as a float (so "R@10 %" of a 9,931-row gallery uses k = 993.1).
The median rank averages the two middle ranks when N is even. The official metric key is ``R@<k>``
with k written as a whole number when it is one (50 items at 10 % give ``R@5``). See
``docs/model.md#composition``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sat2sound_core.common.errors import InputError

FloatArray = npt.NDArray[np.floating]


@dataclass(frozen=True)
class RetrievalMetrics:
    """R@k and median rank of one retrieval direction (queries against a gallery)."""

    recall: float
    median_rank: float
    k: float
    n: int

    @property
    def key(self) -> str:
        """The official metric name: ``R@5`` for k = 5.0, ``R@993.1`` for a fractional k."""
        return f"R@{int(self.k)}" if float(self.k).is_integer() else f"R@{self.k}"


def l2_normalize(x: FloatArray, eps: float = 1e-12) -> FloatArray:
    """Rows divided by their L2 norm (``F.normalize``'s rule: norms below ``eps`` count as ``eps``)."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(arr, axis=-1, keepdims=True), np.float32(eps))
    out: FloatArray = arr / norms
    return out


def positive_ranks(scores: FloatArray) -> npt.NDArray[np.float64]:
    """1-based descending rank of each row's diagonal entry, ties at their average rank.

    ``scores`` is (N, N) with the positive of row i at column i. Vectorised: per row, the number of
    strictly larger scores plus the mean position among the equal ones.
    """
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise InputError(f"retrieval scores must be a square (N, N) matrix, got shape {s.shape}")
    positive = np.diagonal(s)[:, None]
    greater = np.count_nonzero(s > positive, axis=1)
    equal = np.count_nonzero(s == positive, axis=1)  # includes the positive itself
    ranks: npt.NDArray[np.float64] = greater + (equal + 1) / 2.0
    return ranks


def retrieval_metrics(
    queries: FloatArray, gallery: FloatArray, recall_at: float = 10.0, normalized: bool = False
) -> RetrievalMetrics:
    """R@(recall_at %) and median rank of ``queries`` (N, D) against ``gallery`` (N, D), row i ↔ row i.

    Embeddings are L2-normalised first unless ``normalized`` says they already are. The scores are
    float32 products, as in the official code (ties are then the ties it sees, and a 10,000-row gallery
    costs one float32 GEMM).
    """
    q = np.asarray(queries, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape != g.shape:
        raise InputError(f"queries and gallery must both be (N, D) with the same N and D, got {q.shape} and {g.shape}")
    if q.shape[0] == 0:
        raise InputError("no rows to evaluate: the split is empty")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(g))):
        raise InputError("embeddings contain NaN or infinite values; check the weights and inputs")
    if not normalized:
        q, g = l2_normalize(q), l2_normalize(g)
    return metrics_from_scores(q @ g.T, recall_at)


def metrics_from_scores(scores: FloatArray, recall_at: float = 10.0) -> RetrievalMetrics:
    """:class:`RetrievalMetrics` of a square similarity matrix (positive of row i at column i)."""
    if not 0 < recall_at <= 100:
        raise InputError(f"recall_at is a percentage of the gallery in (0, 100], got {recall_at}")
    ranks = positive_ranks(scores)
    n = int(ranks.shape[0])
    k = recall_at / 100.0 * n
    return RetrievalMetrics(recall=float(np.mean(ranks < k)), median_rank=float(np.median(ranks)), k=k, n=n)


def both_directions(
    a: FloatArray, b: FloatArray, recall_at: float = 10.0
) -> tuple[RetrievalMetrics, RetrievalMetrics]:
    """Metrics of ``a`` → ``b`` and ``b`` → ``a`` from one similarity matrix (its transpose serves the
    reverse direction, so nothing is multiplied twice)."""
    an, bn = l2_normalize(np.asarray(a)), l2_normalize(np.asarray(b))
    if an.shape != bn.shape or an.ndim != 2:
        raise InputError(f"both sides must be (N, D) with the same shape, got {an.shape} and {bn.shape}")
    scores = an @ bn.T
    return metrics_from_scores(scores, recall_at), metrics_from_scores(scores.T, recall_at)
