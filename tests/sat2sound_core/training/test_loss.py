"""The contrastive loss against the official code's outputs and hand-computed tiny cases."""

from __future__ import annotations

import math

import pytest
import torch

from sat2sound_core.common.errors import InputError
from sat2sound_core.training.loss import (
    clip_loss,
    contrastive_loss,
    pseudo_positives,
    similarity,
    soft_cross_entropy,
)


def test_matches_the_official_loss(golden_shared):
    g = golden_shared
    s, alpha = g["loss/similarity"], float(g["loss/alpha"])
    eye = torch.eye(s.shape[0], dtype=s.dtype)
    torch.testing.assert_close(pseudo_positives(s), g["loss/pseudo_matched"].to(s.dtype))
    assert int(pseudo_positives(s).sum()) - s.shape[0] == int(g["loss/n_extra_pseudo_positives"])
    torch.testing.assert_close(clip_loss(s, eye), g["loss/clip_loss_identity"], rtol=0, atol=1e-6)
    torch.testing.assert_close(clip_loss(s, pseudo_positives(s)), g["loss/clip_loss_pseudo"], rtol=0, atol=1e-6)
    torch.testing.assert_close(contrastive_loss(s, alpha), g["loss/compute_loss"], rtol=0, atol=1e-6)
    torch.testing.assert_close(contrastive_loss(s, 0.0), g["loss/compute_loss_alpha0"], rtol=0, atol=1e-6)


def test_k_positives_count_k_log_terms_and_targets_are_not_renormalised():
    s = torch.zeros(2, 2, dtype=torch.float64)  # every logit ties: log_softmax = log(1/2) everywhere
    ones = torch.ones(2, 2, dtype=torch.float64)
    assert soft_cross_entropy(s, ones).item() == pytest.approx(2 * math.log(2))
    # ties with the diagonal are pseudo-positives, row by row
    assert pseudo_positives(s).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert contrastive_loss(s, 0.5).item() == pytest.approx(math.log(2) + 0.5 * 2 * math.log(2))


def test_pseudo_positives_are_per_row_and_the_reverse_uses_the_transpose():
    s = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    p = pseudo_positives(s)
    assert p.tolist() == [[1.0, 1.0], [0.0, 1.0]]  # not symmetric: column 1 is never recomputed
    expected = 0.5 * soft_cross_entropy(s, p) + 0.5 * soft_cross_entropy(s.T, p.T)
    torch.testing.assert_close(clip_loss(s, p), expected)


def test_alpha_zero_means_identity_targets_and_gradients_flow_only_through_scores():
    x = torch.randn(4, 8, requires_grad=True)
    y = torch.randn(4, 8)
    s = similarity(x, y, torch.tensor(math.log(1 / 0.07)))
    torch.testing.assert_close(contrastive_loss(s, 0.0), clip_loss(s, torch.eye(4)))
    contrastive_loss(s, 0.1).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(InputError, match="square"):
        contrastive_loss(torch.zeros(2, 3))
