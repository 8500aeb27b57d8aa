"""The shared codebook ("FDT") and its sparse query.

Tokens go through a query map (LN → Linear → GELU → LN → Linear), are scored against the 16000×1024
codebook, divided by √1024 and by the temperature 1000, max-pooled over tokens and turned into
sparse convex weights by sparsemax; the embedding is ``weights · codebook``. Text keeps the official
multiplicative mask: padded tokens score exactly 0 and still take part in the max-pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sat2sound_core.accel.modules import Linear, linear
from sat2sound_core.model.config import ModelConfig


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax over the last axis, float32, in the official formulation.

    Subtract the row max, sort descending, ``k* = max{k : 1 + k·z(k) > Σ_{j≤k} z(j)}``,
    ``τ = (Σ_{j≤k*} z(j) − 1)/k*``, ``w = max(z − τ, 0)``. Vectorised over leading axes.
    """
    z = z.float()
    z = z - z.amax(dim=-1, keepdim=True)
    n = z.shape[-1]
    if n > 4 * _SUPPORT_GUESS:
        # the support is a handful of codes: the formula over the largest _SUPPORT_GUESS values gives
        # the same τ whenever the support ends inside them (checked per row), without sorting all n
        top = torch.topk(z, _SUPPORT_GUESS, dim=-1, sorted=True).values
        k, tau = _sparsemax_threshold(top)
        if bool((k < _SUPPORT_GUESS).all()):
            return torch.clamp_min(z - tau, 0.0)
    zs = torch.sort(z, dim=-1, descending=True).values
    _, tau = _sparsemax_threshold(zs)
    return torch.clamp_min(z - tau, 0.0)


#: how many of the largest scores :func:`sparsemax` looks at before falling back to a full sort
_SUPPORT_GUESS = 256


def _sparsemax_threshold(zs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Support size ``k*`` and threshold ``τ`` from the row-wise descending values ``zs`` (all of them,
    or the largest ones when the support is shorter)."""
    ks = torch.arange(1, zs.shape[-1] + 1, device=zs.device, dtype=zs.dtype)
    is_gt = (1 + ks * zs) > torch.cumsum(zs, dim=-1)
    k = torch.amax(is_gt * ks, dim=-1, keepdim=True)
    tau = (torch.sum(is_gt * zs, dim=-1, keepdim=True) - 1) / k
    return k, tau


def sparse_mix(weights: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``weights @ codebook`` (float32) for sparse (B, K) weights: only the codes some row uses are
    read, instead of the whole (K, D) codebook (64 MB at full size) for a few dozen non-zeros."""
    used = (weights != 0).any(dim=0).nonzero().squeeze(1)
    if used.numel() * 8 > weights.shape[-1]:
        return torch.matmul(weights, codebook.float())
    return torch.matmul(weights.index_select(-1, used), codebook.index_select(0, used).float())


class QueryModel(nn.Module):
    """``q_map``: LayerNorm(d_in) → Linear(d_in→D) → GELU → LayerNorm(D) → Linear(D→D)."""

    def __init__(self, d_in: int, dim: int, eps: float) -> None:
        super().__init__()
        self.q_map = nn.Sequential(
            nn.LayerNorm(d_in, eps=eps),
            Linear(d_in, dim),
            nn.GELU(),
            nn.LayerNorm(dim, eps=eps),
            nn.Linear(dim, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ln1, lin1, _, ln2, lin2 = self.q_map  # the GELU runs inside lin1 (one fused GEMM on a CPU)
        out: torch.Tensor = lin2(ln2(lin1(ln1(x), activation="gelu")))
        return out


@dataclass
class CodebookQuery:
    """Result of one codebook query: sparse weights (B,K), embedding (B,D), raw scores (B,N,K) or None."""

    weights: torch.Tensor
    embedding: torch.Tensor
    scores: torch.Tensor | None


class FDT(nn.Module):
    """``fdt``: the shared codebook ``space_dict`` and the image, text and audio query maps."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.codebook_dim
        self.space_dict = nn.Parameter(torch.randn(config.codebook_size, dim))
        self.img_query_model = QueryModel(config.fc_dim, dim, config.fdt_eps)
        self.txt_query_model = QueryModel(config.text_dim, dim, config.fdt_eps)
        self.audio_query_model = QueryModel(config.audio_frame_dim, dim, config.fdt_eps)
        self.scale = math.sqrt(dim)
        self.temperature = config.sd_temperature
        #: codebook copy used for the token scores (set to a bf16 copy by bf16 precision)
        self.score_codebook: torch.Tensor | None = None

    def query(self, tokens: torch.Tensor, query_model: QueryModel, mask: torch.Tensor | None = None,
              return_scores: bool = False) -> CodebookQuery:
        """Score (B,N,d_in) tokens against the codebook; ``mask`` (B,N) bool marks real text tokens."""
        # everything here is float32 even in bf16 mode except the token·codebook product: sparsemax
        # over 16000 pooled maxima is sensitive to the query's rounding (bf16 costs ~1e-3 cosine)
        with torch.autocast(tokens.device.type, enabled=False):
            q = query_model(tokens.float())
            codebook = self.space_dict if self.score_codebook is None else self.score_codebook
            # (B,N,K) raw token·code products; the (16000, 1024) GEMM of every query is ~15 % faster on
            # a CPU from a blocked copy of the codebook
            scores = linear(q, codebook, None, packed=True)
            # official: S = T/√D; S·mask; S/temperature; max over tokens. Division by a positive
            # constant is monotone, so pooling first and scaling the (B,K) maxima is bit-identical.
            masked = scores if mask is None else scores * mask[..., None].to(scores.dtype)
            pooled = masked.amax(dim=1).float() / self.scale / self.temperature
            weights = sparsemax(pooled)
            embedding = sparse_mix(weights, self.space_dict)
        return CodebookQuery(weights, embedding, scores.float() if return_scores else None)
