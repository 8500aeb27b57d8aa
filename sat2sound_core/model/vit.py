"""SatMAE ViT-B/16 image tower with the GSD-aware positional embedding and the projector.

No class token and no final LayerNorm (the official subclass deletes them). The positional embedding
is recomputed per sample from the ground resolution ``scale × GSD`` in float32, column block first,
exactly as the official Scale-MAE-style code does. Submodule names follow the official state_dict
(``satmae_backbone.backbone.blocks.N.attn.qkv`` …) so checkpoints load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.accel.modules import Linear, Mlp, linear
from sat2sound_core.model.config import GSD, ModelConfig


def ground_resolution(scales: list[int], sat_type: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B,) float32 metres per pixel: ``scale × GSD[sat_type]`` multiplied in Python (double)
    and then rounded to float32, as the official code does (3 × 0.6 gives float32(1.8), not
    float32(3) × float32(0.6))."""
    return torch.tensor([s * GSD[sat_type] for s in scales], dtype=torch.float32, device=device)


def gsd_sincos_pos_embed(dim: int, grid: int, resolution: torch.Tensor) -> torch.Tensor:
    """GSD-scaled 2-D sincos positional embedding, (B, grid², dim) float32.

    ``resolution`` (B,) holds metres per pixel of each sample (zoom level × GSD). For the token at
    (row i, col j) the embedding is ``[sin(j·r·ω), cos(j·r·ω), sin(i·r·ω), cos(i·r·ω)]`` with
    ``ω_k = 1/10000^(k/(dim/4))``; every step is float32 in the official order (position × r, then × ω).
    """
    quarter = dim // 4
    res = resolution.to(torch.float32).reshape(-1)
    device = res.device
    omega = torch.arange(quarter, dtype=torch.float32, device=device)
    omega /= quarter * 1.0
    omega = 1.0 / 10000**omega
    coords = torch.arange(grid, dtype=torch.float32, device=device)
    cols = coords.repeat(grid)  # token t = row * grid + col
    rows = coords.repeat_interleave(grid)

    def block(pos: torch.Tensor) -> torch.Tensor:
        scaled = pos[None, :] * res[:, None]  # (B, T)
        angles = scaled[..., None] * omega  # (B, T, quarter)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    return torch.cat([block(cols), block(rows)], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv Linear (timm layout)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = Linear(dim, dim * 3)
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x += attn(LN1(x)); x += mlp(LN2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches → Linear, stored as the official Conv2d (``proj``)."""

    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a stride == kernel convolution is one GEMM over flattened patches (row-major token order)
        b, c, h, w = x.shape
        p = self.patch
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(b, (h // p) * (w // p), c * p * p)
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        return linear(patches, weight, self.proj.bias)


class SatViT(nn.Module):
    """The SatMAE encoder: patch embedding + GSD positional embedding + pre-norm blocks, no final norm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dim = config.vit_dim
        self.grid = config.grid_size
        self.patch_embed = PatchEmbed(config.patch_size, 3, config.vit_dim)
        self.blocks = nn.ModuleList(
            Block(config.vit_dim, config.vit_heads, config.vit_mlp_dim, config.vit_eps)
            for _ in range(config.vit_depth)
        )

    def forward(self, images: torch.Tensor, resolution: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) images and (B,) metres/pixel → (B, grid², dim) tokens (float32 residual stream)."""
        x: torch.Tensor = self.patch_embed(images).float()
        x = x + gsd_sincos_pos_embed(self.dim, self.grid, resolution)
        for block in self.blocks:
            x = block(x)
        return x


class Projector(nn.Module):
    """Linear(768→1024) → GELU → Linear(1024→1024), applied to every token."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear1 = Linear(in_dim, out_dim)
        self.linear2 = Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.linear1(x, activation="gelu"))


class SatMAEBackbone(nn.Module):
    """``satmae_backbone``: the ViT (``backbone``) followed by the ``projector``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = SatViT(config)
        self.projector = Projector(config.vit_dim, config.fc_dim)

    def forward(self, images: torch.Tensor, resolution: torch.Tensor) -> torch.Tensor:
        """Images → projected patch tokens (B, grid², fc_dim)."""
        tokens: torch.Tensor = self.projector(self.backbone(images, resolution))
        return tokens
