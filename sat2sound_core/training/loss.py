"""The contrastive objective with pseudo-positives, as the official training code computes it.

Each term compares two batches of embeddings through ``S = l2n(x) · l2n(y)ᵀ · exp(logit_scale)`` and
scores ``S`` with :func:`contrastive_loss` = CLIP(S, I) + α·CLIP(S, P). The pseudo-positive matrix ``P``
is built **per row**: ``P[i, j] = 1`` where ``S[i, j] ≥ S[i, i]`` (the diagonal included); the reverse
direction uses ``Pᵀ`` rather than recomputing it per column. The soft-target cross entropy does **not**
renormalise its targets, so a row with k positives counts k log terms. ``α = 0`` switches the
pseudo-positive term off (``P = I``). The paper uses α = 0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat2sound_core.common.errors import InputError

PSEUDO_MATCH_ALPHA = 0.1


def similarity(x: torch.Tensor, y: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``l2n(x) · l2n(y)ᵀ · exp(logit_scale)`` for two (B, D) batches → (B, B)."""
    return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T * logit_scale.exp()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_i(−Σ_j T_ij · log_softmax(S_i)_j)`` with the targets used as given (not renormalised)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def clip_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The symmetric CLIP loss ``½·CE(S, T) + ½·CE(Sᵀ, Tᵀ)``."""
    return 0.5 * soft_cross_entropy(logits, targets) + 0.5 * soft_cross_entropy(logits.T, targets.T)


def pseudo_positives(logits: torch.Tensor) -> torch.Tensor:
    """``P[i, j] = 1`` where ``S[i, j] ≥ S[i, i]``, row by row (the diagonal is always 1)."""
    return (logits >= logits.diagonal()[:, None]).to(logits.dtype)


def contrastive_loss(logits: torch.Tensor, alpha: float = PSEUDO_MATCH_ALPHA) -> torch.Tensor:
    """``CLIP(S, I) + α·CLIP(S, P)`` for a square similarity matrix ``S`` (module docstring)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise InputError(f"the similarity matrix must be square, got {tuple(logits.shape)}")
    identity = torch.eye(logits.shape[0], dtype=logits.dtype, device=logits.device)
    loss = clip_loss(logits, identity)
    if alpha:
        # the targets are a function of the scores, not something to learn through
        loss = loss + alpha * clip_loss(logits, pseudo_positives(logits.detach()))
    return loss
