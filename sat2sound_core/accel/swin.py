"""How the audio tower's Swin blocks run: in how many pieces, and on which window-attention kernel.

A Swin block is per token except for attention inside fixed windows, so it gives the same result on
any run of whole windows. Its processor, a :class:`SwinRunner` chosen for the block's device, cuts the
(B·L, C) token rows into pieces and calls the block's ``step`` on each with a :class:`WindowKernel`:
the attention inside the piece's windows with their relative-position bias (and shift mask).

- On a CPU the block runs in pieces of ``swin_chunk_rows`` tokens (``SAT2SOUND_SWIN_CHUNK_ROWS``,
  whole windows, within one item when the shift masks differ per window): a piece's activations, its
  4×-wide MLP hidden included, stay in the CPU caches instead of streaming through memory between
  the GEMMs (measured on the 2-core benchmark machine: the stage-0 MLP ~1.4× and the stage-1 MLP
  ~1.2× faster; 1024- to 8192-token pieces all gain about that much, and fewer, larger pieces mean
  fewer parallel regions, which matters when other processes share the cores).
- A GPU runs each block in one piece, since there every piece would only add kernel launches; a
  shifted block's per-window bias is then folded into the head axis and broadcast over the items.
- The attention runs on the native kernel (:mod:`sat2sound_core.accel.native`) for float32 on a CPU
  at inference with windows of at most 64 tokens, once it is built; else on PyTorch's
  ``scaled_dot_product_attention``.

The bias is a constant at inference: it is computed once per parameter version (and mask) and kept.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.accel import native
from sat2sound_core.accel.options import AccelOptions
from sat2sound_core.accel.swap import Swappable

T = TypeVar("T")


class WindowKernel(Protocol):
    """Attention inside whole windows: (R, 3C) rows of ``qkv`` (R/N windows of N tokens, row-major
    inside a window) → (R, C) attended values, heads concatenated."""

    def __call__(self, qkv: torch.Tensor, heads: int) -> torch.Tensor: ...


class WindowedAttention(Protocol):
    """What the runner reads from a block's attention (the model's ``WindowAttention``)."""

    @property
    def window(self) -> int: ...
    @property
    def qkv(self) -> nn.Linear: ...
    @property
    def relative_position_bias_table(self) -> nn.Parameter: ...
    @property
    def relative_position_index(self) -> torch.Tensor: ...

    def bias(self, mask: torch.Tensor | None) -> torch.Tensor: ...


@dataclass(frozen=True)
class SDPAWindows:
    """PyTorch's attention with an additive ``bias`` (W, heads, N, N): one per window of the call (or 1
    for all), or one item's windows (W divides the call's windows), folded into the head axis so it
    broadcasts over the items instead of being tiled (q/k/v are then copied into that layout once)."""

    bias: torch.Tensor

    def __call__(self, qkv: torch.Tensor, heads: int) -> torch.Tensor:
        rows, c = qkv.shape[0], qkv.shape[1] // 3
        n = self.bias.shape[-1]
        windows, d = rows // n, c // heads
        # windows form the batch axis; q/k/v stay strided views of the qkv output (no copies) and the
        # output comes back token-major
        t = qkv.reshape(windows, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        per_item = self.bias.shape[0]
        if per_item in (1, windows):
            out = F.scaled_dot_product_attention(t[0], t[1], t[2], attn_mask=self.bias)
        else:
            q, k, v = (part.reshape(windows // per_item, per_item * heads, n, d) for part in t)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias.reshape(1, per_item * heads, n, n))
            out = out.reshape(windows, heads, n, d)
        return out.transpose(1, 2).reshape(rows, c)


@dataclass(frozen=True)
class NativeWindows:
    """The native kernel with the bias in its layout: ``rel_t`` (heads, N, NP), ``mask_t`` (M, N, NP)
    (M = 0 without a shift, see :func:`native.transposed_bias`); window ``w`` of the call adds mask
    ``(first + w) % M``, so a piece starting inside the map passes where it starts."""

    rel_t: torch.Tensor
    mask_t: torch.Tensor
    first: int = 0

    def at(self, first: int) -> NativeWindows:
        return NativeWindows(self.rel_t, self.mask_t, first)

    def __call__(self, qkv: torch.Tensor, heads: int) -> torch.Tensor:
        c = qkv.shape[1] // 3
        return native.window_attention(qkv.contiguous(), self.rel_t, self.mask_t, self.first, (c // heads) ** -0.5)


# --------------------------------------------------------------------------------------------- the bias
_bias_caches: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], tuple[object, ...]]] = (
    weakref.WeakKeyDictionary())


def _cached(attn: WindowedAttention, tag: tuple[object, ...], mask: torch.Tensor | None,
            make: Callable[[], T]) -> T:
    """``make()`` computed once per parameter version (and mask) of ``attn`` under ``tag``. An entry
    keeps the tensors it was made from alive, so their storage addresses in its key stay unique."""
    table, index = attn.relative_position_bias_table, attn.relative_position_index
    key: tuple[object, ...] = (*tag, table.device, table.data_ptr(), table._version, index.data_ptr(),
                               index._version)
    if mask is not None:
        key += (mask.data_ptr(), mask._version)
    cache = _bias_caches.setdefault(cast(nn.Module, attn), {})
    entry = cache.get(key)
    if entry is None:
        with torch.inference_mode(False), torch.no_grad():
            entry = (make(), table.detach(), index, mask)
        if len(cache) > 4:
            cache.clear()
        cache[key] = entry
    return cast(T, entry[0])


def constant_bias(attn: WindowedAttention, mask: torch.Tensor | None, dtype: torch.dtype,
                  repeat: int = 1) -> torch.Tensor:
    """``attn.bias(mask)`` in ``dtype``, its window axis tiled ``repeat`` times; cached at inference."""
    if torch.is_grad_enabled() and attn.relative_position_bias_table.requires_grad:
        return attn.bias(mask).to(dtype).repeat(repeat, 1, 1, 1)  # autograd must see the table
    return _cached(attn, (dtype, repeat), mask, lambda: attn.bias(mask).to(dtype).repeat(repeat, 1, 1, 1))


def native_windows(attn: WindowedAttention, mask: torch.Tensor | None) -> NativeWindows:
    """``attn.bias(mask)`` in the native kernel's layout (relative positions and mask kept apart, so a
    shifted block reads one mask per window instead of one bias per window and head), cached."""

    def make() -> NativeWindows:
        rel_t = native.transposed_bias(attn.bias(None)[0])
        n = attn.window * attn.window
        mask_t = native.transposed_bias(mask) if mask is not None else rel_t.new_zeros((0, n, rel_t.shape[-1]))
        return NativeWindows(rel_t, mask_t)

    return _cached(attn, ("native",), mask, make)


def use_native(x: torch.Tensor, attn: WindowedAttention) -> bool:
    """Whether ``attn`` runs on the native kernel for tokens ``x``: float32 on the CPU, inference (the
    kernel has no backward), windows of at most 64 tokens, and the kernels switched on and built."""
    return (x.device.type == "cpu" and attn.qkv.weight.dtype == torch.float32
            and attn.window * attn.window <= native.MAX_TOKENS
            and not (torch.is_grad_enabled() and attn.qkv.weight.requires_grad)
            and native.available())


# ------------------------------------------------------------------------------------------- the runner
class WindowedBlock(Protocol):
    """What the runner reads from a Swin block (the model's ``SwinBlock``)."""

    @property
    def window(self) -> int: ...
    @property
    def attn_mask(self) -> torch.Tensor | None: ...
    @property
    def attn(self) -> WindowedAttention: ...

    def step(self, x: torch.Tensor, windows: WindowKernel) -> torch.Tensor: ...


def _largest_divisor(total: int, limit: int) -> int:
    limit = max(1, min(total, limit))
    while total % limit:
        limit -= 1
    return limit


@dataclass(frozen=True)
class SwinRunner:
    """Runs a Swin block on (B, L, C) tokens: pieces of ``chunk_rows`` tokens (whole windows), or the
    whole batch in one piece when None; on the native kernel where ``native`` and :func:`use_native`
    allow it. Every layout gives the same result."""

    chunk_rows: int | None
    native: bool

    def __call__(self, block: WindowedBlock, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        attn, mask = block.attn, block.attn_mask
        n = block.window * block.window
        nw = length // n
        flat = x.reshape(b * length, c)
        if self.native and use_native(x, attn):
            # the kernel takes any run of whole windows: the mask index follows the window position
            windows = native_windows(attn, mask)
            chunk = b * nw if self.chunk_rows is None else _largest_divisor(b * nw, max(1, self.chunk_rows // n))
            return _pieces(block, flat, chunk * n, lambda start: windows.at((start // n) % nw)).reshape(b, length, c)
        dtype = attn.qkv.weight.dtype
        if self.chunk_rows is None:  # one piece; a per-window bias broadcasts over the items
            return block.step(flat, SDPAWindows(constant_bias(attn, mask, dtype))).reshape(b, length, c)
        per_window = mask is not None and nw > 1
        want = max(1, self.chunk_rows // n)
        if per_window and want >= nw:
            repeat = _largest_divisor(b, want // nw)
            chunk = repeat * nw
        elif per_window:
            repeat, chunk = 1, _largest_divisor(nw, want)
        else:
            repeat, chunk = 1, _largest_divisor(b * nw, want)
        bias = constant_bias(attn, mask, dtype, repeat)

        def part(start: int) -> WindowKernel:
            if bias.shape[0] > chunk:
                first = (start // n) % nw
                return SDPAWindows(bias[first:first + chunk])
            return SDPAWindows(bias)

        return _pieces(block, flat, chunk * n, part).reshape(b, length, c)


def _pieces(block: WindowedBlock, flat: torch.Tensor, rows: int,
            windows_at: Callable[[int], WindowKernel]) -> torch.Tensor:
    """``block.step`` on consecutive ``rows``-row pieces of ``flat`` (R, C), each with the window
    kernel ``windows_at(first row)``."""
    if rows >= flat.shape[0]:
        return block.step(flat, windows_at(0))
    out = torch.empty_like(flat)
    for start in range(0, flat.shape[0], rows):
        out[start:start + rows] = block.step(flat[start:start + rows], windows_at(start))
    return out


def runner_for(device: torch.device, opts: AccelOptions) -> SwinRunner:
    """The runner for blocks on ``device``: cache-sized pieces and the native kernel on a CPU, one
    piece on a GPU."""
    if device.type == "cpu":
        return SwinRunner(opts.swin_chunk_rows, native=opts.native_kernels)
    return SwinRunner(None, native=False)


class WindowBlock(Swappable[SwinRunner]):
    """Base of a Swin block whose forward is its :class:`SwinRunner` (``self.processor(self, x)``),
    chosen for the device of its parameters."""

    def choose_processor(self, opts: AccelOptions) -> SwinRunner:
        return runner_for(next(self.parameters()).device, opts)


def set_runner(module: nn.Module, runner: SwinRunner) -> None:
    """Run every Swin block in ``module`` with ``runner`` (until it moves or the options change)."""
    for block in module.modules():
        if isinstance(block, WindowBlock):
            block.set_processor(runner)
