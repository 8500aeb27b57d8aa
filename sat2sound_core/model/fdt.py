"""The shared codebook ("FDT") and its sparse query (MODEL.md §7).

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

from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.kernels import linear, linear_gelu


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax over the last axis, float32, in the official formulation.

    Subtract the row max, sort descending, ``k* = max{k : 1 + k·z(k) > Σ_{j≤k} z(j)}``,
    ``τ = (Σ_{j≤k*} z(j) − 1)/k*``, ``w = max(z − τ, 0)``. Vectorised over leading axes.
    """
    z = z.float()
    z = z - z.amax(dim=-1, keepdim=True)
    zs = torch.sort(z, dim=-1, descending=True).values
    ks = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    is_gt = (1 + ks * zs) > torch.cumsum(zs, dim=-1)
    k = torch.amax(is_gt * ks, dim=-1, keepdim=True)
    tau = (torch.sum(is_gt * zs, dim=-1, keepdim=True) - 1) / k
    return torch.clamp_min(z - tau, 0.0)


class QueryModel(nn.Module):
    """``q_map``: LayerNorm(d_in) → Linear(d_in→D) → GELU → LayerNorm(D) → Linear(D→D)."""

    def __init__(self, d_in: int, dim: int, eps: float) -> None:
        super().__init__()
        self.q_map = nn.Sequential(
            nn.LayerNorm(d_in, eps=eps),
            nn.Linear(d_in, dim),
            nn.GELU(),
            nn.LayerNorm(dim, eps=eps),
            nn.Linear(dim, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ln1, lin1, _, ln2, lin2 = self.q_map
        assert isinstance(lin1, nn.Linear)
        return lin2(ln2(linear_gelu(ln1(x), lin1)))


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
            scores = linear(q, codebook, None)  # (B,N,K) raw token·code products (oneDNN GEMM on CPU)
            # official: S = T/√D; S·mask; S/temperature; max over tokens. Division by a positive
            # constant is monotone, so pooling first and scaling the (B,K) maxima is bit-identical.
            masked = scores if mask is None else scores * mask[..., None].to(scores.dtype)
            pooled = masked.amax(dim=1).float() / self.scale / self.temperature
            weights = sparsemax(pooled)
            embedding = torch.matmul(weights, self.space_dict.float())
        return CodebookQuery(weights, embedding, scores.float() if return_scores else None)
