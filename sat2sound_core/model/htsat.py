"""HTS-AT audio tower returning 32 time-ordered frame tokens from its value path.

The mel (B,1001,64) goes through ``bn0`` (running statistics), a bicubic stretch to 1024 frames, a
fold into a 256×256 image, a 4×4 patch embedding and four Swin stages. Sat2Sound uses only the
"value path" of the last block of the last stage: ``v = x + proj(V(LN1(x)))``, ``v = v + LN2(v)``,
then the final LayerNorm, and pools the 8×8 grid to 32 frames in time order. That last block's
attention (q/k), its MLP, ``tscam_conv``, ``head`` and the torchlibrosa front end are never computed;
the last block keeps only the value slice of the official qkv (``attn.v_proj``).

How the blocks run on a device (in cache-sized pieces on a CPU, which attention kernel) is chosen in
:mod:`sat2sound_core.accel.swin`; the modules here only say what they compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.accel.modules import LayerNorm, Linear, Mlp, linear, prepack
from sat2sound_core.accel.swin import WindowBlock, WindowKernel
from sat2sound_core.model.config import ModelConfig


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


def merge_index(side: int, source_order: torch.Tensor, target_order: torch.Tensor) -> torch.Tensor:
    """((side/2)²·4,) int64: for patch merging of a ``side``² map held in ``source_order`` layout, the
    source positions of each merged token in ``target_order`` layout (a layout of the ``side/2`` grid),
    four per token in the official concat order (0,0),(1,0),(0,1),(1,1) (row offset, column offset)."""
    half = side // 2
    rows = torch.div(target_order, half, rounding_mode="floor") * 2
    cols = (target_order % half) * 2
    pos = torch.stack([rows * side + cols, (rows + 1) * side + cols, rows * side + cols + 1,
                       (rows + 1) * side + cols + 1], dim=-1)
    return torch.argsort(source_order)[pos].reshape(-1)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(1, index)`` for (B, L, C) tokens, as one gather of whole rows of the flattened
    (B·L, C) tensor (about twice as fast on the CPU as gathering along the middle axis)."""
    b, length, c = x.shape
    if b == 1:
        return x.index_select(1, index)
    rows = (torch.arange(b, device=index.device)[:, None] * length + index).reshape(-1)
    return x.reshape(b * length, c).index_select(0, rows).reshape(b, index.numel(), c)


def _set_index_buffer(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    """Copy ``value`` into the existing buffer ``name`` (keeps its device) or register it."""
    current = module._buffers.get(name)
    if current is not None and value is not None and current.shape == value.shape:
        current.copy_(value)
    else:
        module.register_buffer(name, value, persistent=False)


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
        return bias.contiguous()

    def forward(self, tokens: torch.Tensor, windows: WindowKernel,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """(R, C) tokens of R/N whole windows (row-major inside a window) → ``residual + proj(a)``, where
        ``a`` is the attention inside each window, ``softmax(q·kᵀ/√d + bias)·v`` per head, computed by
        ``windows`` (which holds this module's :meth:`bias` for these windows)."""
        return self.proj(windows(self.qkv(tokens), self.heads), residual=residual)


class SwinBlock(WindowBlock):
    """Swin block: (shifted) window attention and MLP, both pre-norm residual.

    It works on (B, L, C) tokens held in its own window layout (:attr:`order`: the map position of
    each token, see :func:`window_order`); LayerNorm, MLP and residual adds are per token, so the
    stream can stay in that layout and ``entry`` (an index into the previous block's layout, set by
    :class:`HTSAT`) is the only reordering per block.
    """

    def __init__(self, dim: int, heads: int, window: int, shift: int, side: int, mlp_ratio: int,
                 eps: float) -> None:
        super().__init__()
        self.window, self.shift, self.side = window, shift, side
        self.norm1 = LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.attn_mask: torch.Tensor | None
        if shift:
            self.register_buffer("attn_mask", shifted_window_mask(side, window, shift))
        else:
            self.attn_mask = None
        self.order: torch.Tensor
        self.register_buffer("order", window_order(side, window, shift), persistent=False)

    def reset_constants(self) -> None:
        """Recompute the constant buffers (after ``to_empty``)."""
        if self.attn_mask is not None:
            self.attn_mask.copy_(shifted_window_mask(self.side, self.window, self.shift))
        self.order.copy_(window_order(self.side, self.window, self.shift))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) in :attr:`order` layout → same layout: :meth:`step` on the tokens.

        Windows are independent and everything else is per token, so the block's runner (chosen for
        its device, :mod:`sat2sound_core.accel.swin`) may run :meth:`step` on pieces of whole windows;
        the result is the same as in one piece.
        """
        return self.processor(self, x)

    def step(self, x: torch.Tensor, windows: WindowKernel) -> torch.Tensor:
        """The block on (R, C) rows of whole windows: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``
        (each residual add fused into the layer's output projection where the device allows)."""
        x = self.attn(self.norm1(x), windows, residual=x)
        return self.mlp(self.norm2(x), residual=x)


class ValueProjection(nn.Module):
    """The last block's attention reduced to what its value path needs: the v slice and ``proj``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.v_proj = Linear(dim, dim)
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``residual + proj(V(x))``: no attention mixing, since window partition and shift are token
        permutations that cancel out."""
        return self.proj(self.v_proj(x), residual=residual)


class ValuePathBlock(nn.Module):
    """Last Swin block, value path only: ``v = x + proj(V(LN1(x))); v = v + LN2(v)``."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=eps)
        self.attn = ValueProjection(dim)
        self.norm2 = LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v: torch.Tensor = self.attn(self.norm1(x), residual=x)
        return v + self.norm2(v)


class PatchMerging(nn.Module):
    """2×2 neighbourhood → LN(4C) → Linear(4C→2C, no bias); concat order (0,0),(1,0),(0,1),(1,1)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = LayerNorm(4 * dim, eps=eps)
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, L, C) tokens in any layout → (B, L/4, 2C): ``index`` (from :func:`merge_index`) picks
        the four sources of every merged token, so merging and the next layout are one gather."""
        b, length, c = x.shape
        x = gather_tokens(x, index).reshape(b, length // 4, 4 * c)
        return self.reduction(self.norm(x)).float()  # keep the residual stream float32


class SwinStage(nn.Module):
    """``layers.s``: blocks (odd ones shifted unless the grid is one window) and an optional merge.

    Works on (B, L, C) tokens; ``entries[i]`` reorders the stream from the previous block's layout
    into block i's (None when it is the same) and ``merge`` gathers straight into the next stage's
    first layout. :class:`HTSAT` fills both with :meth:`HTSAT.reset_constants`.
    """

    def __init__(self, config: ModelConfig, stage: int, side: int, last: bool) -> None:
        super().__init__()
        dim = config.htsat_embed_dim * 2**stage
        window = min(config.htsat_window, side)
        self.side = side
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
        self.merge: torch.Tensor | None

    def set_plan(self, entries: list[torch.Tensor | None], merge: torch.Tensor | None) -> None:
        """Register (first call) or refresh (in place) the reordering indices as non-persistent
        buffers, so they follow the module across devices."""
        for name, value in (*((f"entry{i}", e) for i, e in enumerate(entries)), ("merge", merge)):
            _set_index_buffer(self, name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) tokens in the layout the previous stage left → the next stage's first layout."""
        for i, block in enumerate(self.blocks):
            entry = self._buffers.get(f"entry{i}")
            if entry is not None:
                x = gather_tokens(x, entry)
            x = block(x)
        if self.downsample is not None:
            assert self.merge is not None
            x = self.downsample(x, self.merge)
        return x


class HTSATPatchEmbed(nn.Module):
    """4×4 patches of the folded spectrogram → Linear (stored as Conv2d ``proj``) → LayerNorm."""

    def __init__(self, patch: int, dim: int, eps: float) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.norm = LayerNorm(dim, eps=eps)

    def forward(self, img: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        """(B,1,S,S) → (B, (S/p)², dim) tokens, row-major or in ``order`` (map positions)."""
        b = img.shape[0]
        p, g = self.patch, img.shape[-1] // self.patch
        patches = img.reshape(b, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(b, g * g, p * p)
        if order is not None:
            patches = gather_tokens(patches, order)
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        x = linear(patches, weight, self.proj.bias)  # a stride == kernel convolution is one GEMM
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


def _layout_plan(config: ModelConfig) -> tuple[torch.Tensor | None, list[list[torch.Tensor | None]],
                                              list[torch.Tensor | None], torch.Tensor | None]:
    """The token reorderings of the whole tower, computed on the CPU from the config alone.

    Returns the patch order (row-major patches → first block's layout), per stage the entry index of
    every block (None when its layout equals the previous one), per stage the merge index (None for
    the last stage) and the exit index (last layout → row-major, None if it already is).
    """
    with torch.device("cpu"):  # also while the model itself is built on the meta device
        return _layout_plan_cpu(config)


def _layout_plan_cpu(config: ModelConfig) -> tuple[torch.Tensor | None, list[list[torch.Tensor | None]],
                                                  list[torch.Tensor | None], torch.Tensor | None]:
    side = config.htsat_spec_size // config.htsat_patch
    n_stages = len(config.htsat_depths)
    layouts: list[list[torch.Tensor | None]] = []
    sides = []
    for s in range(n_stages):
        window = min(config.htsat_window, side)
        depth = config.htsat_depths[s]
        stage_layouts: list[torch.Tensor | None] = []
        for i in range(depth):
            if s == n_stages - 1 and i == depth - 1:
                stage_layouts.append(None)  # value path: per token, keeps the previous layout
                continue
            shift = window // 2 if (i % 2 == 1 and side > window) else 0
            stage_layouts.append(window_order(side, window, shift))
        layouts.append(stage_layouts)
        sides.append(side)
        side //= 2

    def first(s: int) -> torch.Tensor:
        lay = layouts[s][0]
        return torch.arange(sides[s] ** 2) if lay is None else lay

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(torch.equal(a, b))

    first0 = first(0)
    patch_order = None if same(first0, torch.arange(sides[0] ** 2)) else first0
    entries: list[list[torch.Tensor | None]] = []
    merges: list[torch.Tensor | None] = []
    current = first0
    for s in range(n_stages):
        stage_entries: list[torch.Tensor | None] = []
        for lay in layouts[s]:
            if lay is None or same(lay, current):
                stage_entries.append(None)
            else:
                stage_entries.append(torch.argsort(current)[lay])
                current = lay
        entries.append(stage_entries)
        if s < n_stages - 1:
            nxt = first(s + 1)
            merges.append(merge_index(sides[s], current, nxt))
            current = nxt
        else:
            merges.append(None)
    exit_index = None if same(current, torch.arange(sides[-1] ** 2)) else torch.argsort(current)
    return patch_order, entries, merges, exit_index


class HTSAT(nn.Module):
    """``audio_enc``: log-mel (B,T,F) → frame tokens (B, n_frames, audio_frame_dim), time order.

    Between the patch embedding and the final pooling the tokens stay a (B, L, C) sequence in the
    window layout of the block that reads them; the plan of reorderings (:func:`_layout_plan`) makes
    that one gather per block whose layout changes, and patch merging one gather into the next
    stage's layout.
    """

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
        self.norm = LayerNorm(config.audio_frame_dim, eps=config.htsat_eps)
        self.patch_order: torch.Tensor | None
        self.exit_order: torch.Tensor | None
        self._set_plan()
        # its GEMMs are narrow (96 to 768 wide) and many: on a CPU, oneDNN-blocked weights pay here
        prepack(self)

    def _set_plan(self) -> None:
        patch_order, entries, merges, exit_index = _layout_plan(self.config)
        for stage, stage_entries, merge in zip(self.layers, entries, merges, strict=True):
            assert isinstance(stage, SwinStage)
            stage.set_plan(stage_entries, merge)
        _set_index_buffer(self, "patch_order", patch_order)
        _set_index_buffer(self, "exit_order", exit_index)

    def reset_constants(self) -> None:
        """Recompute the reordering indices (after ``to_empty``)."""
        self._set_plan()

    def fold(self, mel: torch.Tensor) -> torch.Tensor:
        """(B,T,F) mel → bn0 → bicubic time stretch → (B,1,S,S) image (row = chunk·F + mel)."""
        cfg = self.config
        x: torch.Tensor = self.bn0(mel.float().unsqueeze(1))  # (B,1,T,F), statistics per mel bin
        if x.shape[2] < cfg.htsat_frames:
            x = F.interpolate(x, (cfg.htsat_frames, x.shape[3]), mode="bicubic", align_corners=True)
        b, ratio = x.shape[0], cfg.htsat_freq_ratio
        x = x.transpose(2, 3)  # (B,1,F,T')
        x = x.reshape(b, 1, cfg.mel_bins, ratio, cfg.htsat_frames // ratio).permute(0, 1, 3, 2, 4)
        return x.reshape(b, 1, ratio * cfg.mel_bins, cfg.htsat_frames // ratio)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.fold(mel), self.patch_order)
        for stage in self.layers:
            x = stage(x)
        if self.exit_order is not None:
            x = gather_tokens(x, self.exit_order)
        v = self.norm(x)  # (B, G·G, C) row-major, value path of the last block
        b, c = v.shape[0], v.shape[-1]
        g = self.config.htsat_final_grid
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
        frames: torch.Tensor = self.model.audio_enc(mel)
        return frames
