"""HTS-AT audio tower returning 32 time-ordered frame tokens from its value path (MODEL.md §8.2).

The mel (B,1001,64) goes through ``bn0`` (running statistics), a bicubic stretch to 1024 frames, a
fold into a 256×256 image, a 4×4 patch embedding and four Swin stages. Sat2Sound uses only the
"value path" of the last block of the last stage: ``v = x + proj(V(LN1(x)))``, ``v = v + LN2(v)``,
then the final LayerNorm, and pools the 8×8 grid to 32 frames in time order. That last block's
attention (q/k), its MLP, ``tscam_conv``, ``head`` and the torchlibrosa front end are never computed;
the last block keeps only the value slice of the official qkv (``attn.v_proj``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.kernels import Linear, linear
from sat2sound_core.model.vit import Mlp


def relative_position_index(window: int) -> torch.Tensor:
    """Swin relative-position index (window², window²): ``(Δrow + w-1)·(2w-1) + (Δcol + w-1)``."""
    coords = torch.arange(window)
    rows = coords.repeat_interleave(window)
    cols = coords.repeat(window)
    d_row = rows[:, None] - rows[None, :] + window - 1
    d_col = cols[:, None] - cols[None, :] + window - 1
    return (d_row * (2 * window - 1) + d_col).to(torch.int64)


def shifted_window_mask(side: int, window: int, shift: int) -> torch.Tensor:
    """(nW, window², window²) additive mask: −100 between tokens of different shifted regions."""
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    region = torch.zeros(side, side)
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[rows, cols] = label
            label += 1
    per_side = side // window
    win = region.reshape(per_side, window, per_side, window).permute(0, 2, 1, 3)
    win = win.reshape(per_side * per_side, window * window)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0).to(torch.float32)


def window_order(side: int, window: int, shift: int) -> torch.Tensor:
    """(side²,) int64: for each position of the shifted, window-partitioned sequence, the row-major
    index of the map position it comes from.

    Rolling the map by ``-shift`` and cutting it into windows (row-major windows, row-major tokens
    inside a window) is this one permutation, so a single ``index_select`` replaces roll + reshape +
    permute (and ``argsort`` of it undoes them).
    """
    per_side = side // window
    wr, wc, r, c = torch.meshgrid(torch.arange(per_side), torch.arange(per_side), torch.arange(window),
                                  torch.arange(window), indexing="ij")
    rows = (wr * window + r + shift) % side
    cols = (wc * window + c + shift) % side
    return (rows * side + cols).reshape(-1)


class WindowAttention(nn.Module):
    """Window self-attention with a learned relative-position bias (official buffer names)."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.qkv = Linear(dim, dim * 3)
        self.proj = Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.relative_position_index: torch.Tensor
        self.register_buffer("relative_position_index", relative_position_index(window))

    def reset_constants(self) -> None:
        """Recompute the constant index buffer (after ``to_empty``)."""
        self.relative_position_index.copy_(relative_position_index(self.window))

    def bias(self, mask: torch.Tensor | None) -> torch.Tensor:
        """(1 or nW, heads, N, N) float32 additive bias: relative positions (+ shift mask)."""
        n = self.window * self.window
        table = self.relative_position_bias_table.float()
        index: torch.Tensor = self.relative_position_index
        bias = table[index.reshape(-1)].reshape(n, n, self.heads)
        bias = bias.permute(2, 0, 1)[None]
        if mask is not None:
            bias = bias + mask[:, None]
        return bias

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, nW, N, C) windows → attended (B, nW, N, C)."""
        b, nw, n, c = windows.shape
        h = self.heads
        qkv = self.qkv(windows).reshape(b, nw, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)
        # windows and heads share one batch axis so a (nW·heads, N, N) bias broadcasts over items
        q, k, v = (t.reshape(b, nw * h, n, c // h) for t in qkv)
        bias = self.bias(mask).expand(nw, h, n, n).reshape(1, nw * h, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = out.reshape(b, nw, h, n, c // h).transpose(2, 3).reshape(b, nw, n, c)
        return self.proj(out)


class SwinBlock(nn.Module):
    """Swin block on a (B,H,W,C) map: (shifted) window attention and MLP, both pre-norm residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, side: int, mlp_ratio: int,
                 eps: float) -> None:
        super().__init__()
        self.window, self.shift, self.side = window, shift, side
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.attn_mask: torch.Tensor | None
        if shift:
            self.register_buffer("attn_mask", shifted_window_mask(side, window, shift))
        else:
            self.attn_mask = None
        self.order: torch.Tensor
        self.inverse_order: torch.Tensor
        order = window_order(side, window, shift)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)

    def reset_constants(self) -> None:
        """Recompute the constant buffers (after ``to_empty``)."""
        if self.attn_mask is not None:
            self.attn_mask.copy_(shifted_window_mask(self.side, self.window, self.shift))
        order = window_order(self.side, self.window, self.shift)
        self.order.copy_(order)
        self.inverse_order.copy_(torch.argsort(order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        n = self.window * self.window
        y = self.norm1(x).reshape(b, h * w, c)
        windows = y.index_select(1, self.order).reshape(b, (h * w) // n, n, c)  # roll + partition
        y = self.attn(windows, self.attn_mask).reshape(b, h * w, -1)
        y = y.index_select(1, self.inverse_order).reshape(b, h, w, c)  # reverse + roll back
        x = x + y
        return x + self.mlp(self.norm2(x))


class ValueProjection(nn.Module):
    """The last block's attention reduced to what its value path needs: the v slice and ``proj``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.v_proj = Linear(dim, dim)
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no attention mixing: window partition/shift are token permutations that cancel out
        return self.proj(self.v_proj(x))


class ValuePathBlock(nn.Module):
    """Last Swin block, value path only: ``v = x + proj(V(LN1(x))); v = v + LN2(v)``."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = ValueProjection(dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x + self.attn(self.norm1(x))
        return v + self.norm2(v)


class PatchMerging(nn.Module):
    """2×2 neighbourhood → LN(4C) → Linear(4C→2C, no bias); concat order (0,0),(1,0),(0,1),(1,1)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x)).float()  # keep the residual stream float32


class SwinStage(nn.Module):
    """``layers.s``: blocks (odd ones shifted unless the grid is one window) and an optional merge."""

    def __init__(self, config: ModelConfig, stage: int, side: int, last: bool) -> None:
        super().__init__()
        dim = config.htsat_embed_dim * 2**stage
        window = min(config.htsat_window, side)
        depth = config.htsat_depths[stage]
        blocks: list[nn.Module] = []
        for i in range(depth):
            if last and i == depth - 1:
                blocks.append(ValuePathBlock(dim, config.htsat_eps))
                continue
            shift = window // 2 if (i % 2 == 1 and side > window) else 0
            blocks.append(SwinBlock(dim, config.htsat_heads[stage], window, shift, side,
                                    config.htsat_mlp_ratio, config.htsat_eps))
        self.blocks = nn.ModuleList(blocks)
        self.downsample = None if last else PatchMerging(dim, config.htsat_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class HTSATPatchEmbed(nn.Module):
    """4×4 patches of the folded spectrogram → Linear (stored as Conv2d ``proj``) → LayerNorm."""

    def __init__(self, patch: int, dim: int, eps: float) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """(B,1,S,S) → (B, S/p, S/p, dim)."""
        b, _, s, _ = img.shape
        p, g = self.patch, img.shape[-1] // self.patch
        patches = img.reshape(b, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(b, g, g, p * p)
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        x = linear(patches, weight, self.proj.bias)
        return self.norm(x.float())


class FrozenBatchNorm(nn.Module):
    """Evaluation-only BatchNorm over the mel axis (``bn0``): running statistics, affine, eps 1e-5.

    Holds ``weight, bias, running_mean, running_var`` like ``nn.BatchNorm2d`` but no
    ``num_batches_tracked`` counter, which inference never reads.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last axis of ``x``."""
        return F.batch_norm(x.transpose(1, -1), self.running_mean, self.running_var, self.weight,
                            self.bias, False, 0.0, self.eps).transpose(1, -1)


class HTSAT(nn.Module):
    """``audio_enc``: log-mel (B,T,F) → frame tokens (B, n_frames, audio_frame_dim), time order."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.bn0 = FrozenBatchNorm(config.mel_bins, config.htsat_eps)
        self.patch_embed = HTSATPatchEmbed(config.htsat_patch, config.htsat_embed_dim, config.htsat_eps)
        side = config.htsat_spec_size // config.htsat_patch
        n_stages = len(config.htsat_depths)
        stages = []
        for s in range(n_stages):
            stages.append(SwinStage(config, s, side, last=s == n_stages - 1))
            side //= 2
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(config.audio_frame_dim, eps=config.htsat_eps)

    def fold(self, mel: torch.Tensor) -> torch.Tensor:
        """(B,T,F) mel → bn0 → bicubic time stretch → (B,1,S,S) image (row = chunk·F + mel)."""
        cfg = self.config
        x = self.bn0(mel.float().unsqueeze(1))  # (B,1,T,F), statistics per mel bin
        if x.shape[2] < cfg.htsat_frames:
            x = F.interpolate(x, (cfg.htsat_frames, x.shape[3]), mode="bicubic", align_corners=True)
        b, ratio = x.shape[0], cfg.htsat_freq_ratio
        x = x.transpose(2, 3)  # (B,1,F,T')
        x = x.reshape(b, 1, cfg.mel_bins, ratio, cfg.htsat_frames // ratio).permute(0, 1, 3, 2, 4)
        return x.reshape(b, 1, ratio * cfg.mel_bins, cfg.htsat_frames // ratio)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.fold(mel)).float()
        for stage in self.layers:
            x = stage(x)
        v = self.norm(x)  # (B, G, G, C), value path of the last block
        b, g, _, c = v.shape
        ratio = self.config.htsat_freq_ratio
        # grid row r = chunk·(G/ratio) + half; time index = chunk·G + col; average the mel halves
        v = v.reshape(b, ratio, g // ratio, g, c).mean(dim=2)
        return v.reshape(b, ratio * g, c)


class AudioModel(nn.Module):
    """``audio_encoder.model``: holds ``audio_enc`` (official nesting)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.audio_enc = HTSAT(config)


class AudioEncoder(nn.Module):
    """``audio_encoder``: log-mel (B,T,F) → frame tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.model = AudioModel(config)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model.audio_enc(mel)
