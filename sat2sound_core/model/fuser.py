"""Metadata embedders and the early-fusion transformer, evaluation semantics.

The official fuser is an ``nn.TransformerEncoder`` (post-norm, GELU, 8 heads) over the image tokens
followed by the metadata tokens. In official evaluation PyTorch's fast path drops key-padded
(invalid) metadata positions and pads them back with zeros. This module reproduces that per item:
invalid metadata positions are never keys, and their outputs are exact zeros, so an item's result
never depends on its batch mates. Parameter names match the official state_dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.accel.modules import Linear, linear
from sat2sound_core.model.config import ModelConfig
from sat2sound_core.preprocess.metadata import MetadataBatch


class SourceEmbed(nn.Module):
    """Integer source code → learned vector (``source_embed``)."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.source_embed = nn.Embedding(n, dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.source_embed(codes)
        return out


class CyclicEmbed(nn.Module):
    """Encoded value → Linear → GELU → Linear (``fc1``, ``fc2``)."""

    def __init__(self, in_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.fc1 = Linear(in_dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x, activation="gelu"))


class MetaEmbed(nn.Module):
    """One embedder per enabled metadata token (``meta_embed.*_fc``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        tokens = config.metadata_tokens
        dim, hidden = config.fc_dim, config.meta_hidden_dim
        self.tokens = tuple(tokens)
        if "asource" in tokens:
            self.audio_source_fc = SourceEmbed(config.n_audio_sources, dim)
        if "tsource" in tokens:
            self.caption_source_fc = SourceEmbed(config.n_caption_sources, dim)
        if "latlong" in tokens:
            self.location_fc = CyclicEmbed(4, hidden, dim)
        if "month" in tokens:
            self.month_fc = CyclicEmbed(2, hidden, dim)
        if "time" in tokens:
            self.time_fc = CyclicEmbed(2, hidden, dim)

    def forward(self, meta: MetadataBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """→ tokens (B, M, dim) float32 with invalid ones zeroed, and validity (B, M) bool."""
        parts = []
        for token in self.tokens:
            if token == "asource":
                parts.append(self.audio_source_fc(meta.audio_source))
            elif token == "tsource":
                parts.append(self.caption_source_fc(meta.caption_source))
            elif token == "latlong":
                parts.append(self.location_fc(meta.latlong))
            elif token == "month":
                parts.append(self.month_fc(meta.month))
            else:
                parts.append(self.time_fc(meta.time))
        embeddings = torch.stack([p.float() for p in parts], dim=1)
        valid = meta.token_mask().to(embeddings.device)
        return embeddings * valid[..., None].to(embeddings.dtype), valid


class FuserSelfAttention(nn.Module):
    """Multi-head attention with the ``nn.MultiheadAttention`` parameter layout and a key mask."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        """``key_valid`` (B, N) bool, or None when every position is a key."""
        b, n, c = x.shape
        qkv = linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class FuserLayer(nn.Module):
    """Post-norm encoder layer: ``x = LN1(x + SA(x)); x = LN2(x + FFN(x))`` with GELU."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, eps: float) -> None:
        super().__init__()
        self.self_attn = FuserSelfAttention(dim, heads)
        self.linear1 = Linear(dim, ffn_dim)
        self.linear2 = Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, key_valid))
        out: torch.Tensor = self.norm2(x + self.linear2(self.linear1(x, activation="gelu")))
        return out


class TransformerEncoder(nn.Module):
    """A stack of :class:`FuserLayer` (``transformer_encoder.layers.N``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            FuserLayer(config.fc_dim, config.fuser_heads, config.fuser_ffn_dim, config.fuser_eps)
            for _ in range(config.fuser_layers)
        )

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_valid)
        return x


class MetaFuser(nn.Module):
    """``meta_fuser``: image tokens + metadata tokens → fused tokens (B, N + M, dim)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.meta_embed = MetaEmbed(config)
        self.transformer_encoder = TransformerEncoder(config)

    def forward(self, image_tokens: torch.Tensor, meta: MetadataBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse; returns the fused tokens and the metadata token validity (B, M) bool."""
        meta_tokens, valid = self.meta_embed(meta)
        x = torch.cat([image_tokens.float(), meta_tokens], dim=1)
        b, n = image_tokens.shape[:2]
        if bool(valid.all()):
            return self.transformer_encoder(x, None), valid
        key_valid = torch.cat([torch.ones(b, n, dtype=torch.bool, device=x.device), valid], dim=1)
        fused = self.transformer_encoder(x, key_valid)
        # what the official eval fast path returns at dropped (padded) positions: exact zeros
        return fused.masked_fill(~key_valid[..., None], 0.0), valid


class SatEncoder(nn.Module):
    """``sat_encoder``: holds the metadata fuser (only built for *_withmeta configs)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.meta_fuser = MetaFuser(config)

    def forward(self, image_tokens: torch.Tensor, meta: MetadataBatch) -> tuple[torch.Tensor, torch.Tensor]:
        fused: tuple[torch.Tensor, torch.Tensor] = self.meta_fuser(image_tokens, meta)
        return fused
