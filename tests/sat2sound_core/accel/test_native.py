"""The native window-attention kernel: built here, equal to PyTorch's attention, and safely optional."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sat2sound_core import accel
from sat2sound_core.accel import native
from sat2sound_core.accel.swin import NativeWindows, native_windows, use_native
from sat2sound_core.common.settings import get_settings
from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.htsat import HTSAT, WindowAttention, shifted_window_mask


@pytest.fixture()
def restore_native():
    yield
    native.reset()  # load again next time (a test may have broken the build on purpose)


def _reference(qkv: torch.Tensor, bias: torch.Tensor, heads: int, n: int,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """PyTorch's attention on the same inputs: (windows or 1, heads, N, N) bias."""
    rows, c3 = qkv.shape
    c, d = c3 // 3, c3 // 3 // heads
    t = qkv.to(dtype).reshape(rows // n, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(t[0], t[1], t[2], attn_mask=bias.to(dtype))
    return out.transpose(1, 2).reshape(rows, c).double()


def _assert_as_exact_as_pytorch(out: torch.Tensor, qkv: torch.Tensor, bias: torch.Tensor, heads: int,
                                n: int) -> None:
    """The kernel is about as close to the float64 result as PyTorch's own float32 attention (both
    ~5e-6 here; their rounding differs, so either can be a few times closer on a given input)."""
    exact = _reference(qkv, bias, heads, n)
    ours = (out.double() - exact).abs().max().item()
    pytorch = (_reference(qkv, bias, heads, n, torch.float32) - exact).abs().max().item()
    assert ours <= 4 * pytorch + 1e-5, (ours, pytorch)


def test_kernel_builds_on_this_machine() -> None:
    """The test machine has a compiler (make installs g++): the kernel must load, not fall back."""
    assert native.available(), native.status()
    assert native.library_path().is_file()


@pytest.mark.parametrize(("windows", "heads", "side", "d"), [
    (8, 4, 8, 24),   # HTS-AT stage 0: 8×8 windows, head dim 24
    (6, 16, 8, 24),  # stage 2 (16 heads)
    (5, 2, 7, 32),   # 49-token windows, a 4-key remainder and padded queries
    (4, 3, 4, 5),    # 16 tokens, odd head dim (remainder of the 4-wide output loop)
    (3, 1, 2, 8),    # 4 tokens
])
def test_kernel_equals_sdpa(windows: int, heads: int, side: int, d: int) -> None:
    assert native.available(), native.status()
    gen = torch.Generator().manual_seed(windows * 100 + side)
    n = side * side
    qkv = torch.randn(windows * n, 3 * heads * d, generator=gen) * 2
    rel = torch.randn(heads, n, n, generator=gen)
    rel_t = native.transposed_bias(rel)
    no_mask = rel_t.new_zeros((0, n, rel_t.shape[-1]))
    out = native.window_attention(qkv, rel_t, no_mask, 0, d ** -0.5)
    _assert_as_exact_as_pytorch(out, qkv, rel[None], heads, n)

    # per-window masks: window w of a call starting at mask `first` adds mask (first + w) % M
    masks = torch.where(torch.rand(3, n, n, generator=gen) < 0.3, -100.0, 0.0)
    first = 2
    per_window = torch.stack([masks[(first + w) % 3] for w in range(windows)])
    out = native.window_attention(qkv, rel_t, native.transposed_bias(masks), first, d ** -0.5)
    _assert_as_exact_as_pytorch(out, qkv, rel[None] + per_window[:, None], heads, n)


def test_masked_weights_underflow_to_zero() -> None:
    """The −100 shift mask puts the other regions' scores ~100 below the row max, where exp goes
    below float32's normal range: their weights must come out 0 (as in softmax), so each query mixes
    only the values of its own region. (With logits in the thousands the official −100 would not
    separate the regions at all: that is the official function, not tested here.)"""
    n, heads, d = 64, 2, 24
    gen = torch.Generator().manual_seed(7)
    mask = shifted_window_mask(16, 8, 4)[-1]  # the corner window: four regions, −100 between them
    region = (mask == 0).float().argmax(dim=1)  # each token's region: its first same-region token
    qkv = torch.randn(2 * n, 3 * heads * d, generator=gen) * 2  # logits of about ±15
    values = qkv[:, 2 * heads * d:].view(2, n, heads * d)
    values[:] = region[None, :, None].float() * 1000 + values  # regions 1000 apart
    out = native.window_attention(qkv, native.transposed_bias(torch.zeros(heads, n, n)),
                                  native.transposed_bias(mask[None]), 0, d ** -0.5)
    assert torch.isfinite(out).all()
    for i in range(n):  # a convex combination of the query's own region: within its values' range
        own = values[:, region == region[i]]
        low, high = own.amin(dim=1), own.amax(dim=1)
        assert ((out.view(2, n, -1)[:, i] >= low - 1e-3) & (out.view(2, n, -1)[:, i] <= high + 1e-3)).all()


def test_kernel_rejects_bad_inputs() -> None:
    qkv = torch.randn(64, 72)
    rel_t = native.transposed_bias(torch.zeros(1, 64, 64))
    no_mask = rel_t.new_zeros((0, 64, 64))
    with pytest.raises(RuntimeError, match="float32"):
        native.window_attention(qkv.double(), rel_t, no_mask, 0, 0.2)
    with pytest.raises(RuntimeError, match="whole windows"):
        native.window_attention(qkv[:60], rel_t, no_mask, 0, 0.2)
    with pytest.raises(RuntimeError, match="N <= 64"):
        native.window_attention(torch.randn(81, 72), native.transposed_bias(torch.zeros(1, 81, 81)),
                                torch.zeros(0, 81, 96), 0, 0.2)


@pytest.mark.parametrize("rows", [64, 3 * 64, 10**9])
def test_tower_with_kernel_equals_pytorch_attention(monkeypatch, rows: int) -> None:
    """A whole HTS-AT tower with 8×8 windows (shifted blocks included), chunked or not, gives the same
    frames with the kernel as with PyTorch's attention."""
    import sat2sound_core.model.htsat as htsat

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(htsat_window=8)
    net = HTSAT(cfg).eval()
    with torch.no_grad():
        for block in net.modules():
            if isinstance(block, htsat.WindowAttention):
                block.relative_position_bias_table.normal_()
    mel = torch.randn(3, 1001, 64)
    calls = []
    real = native.window_attention
    monkeypatch.setattr(native, "window_attention", lambda *a: calls.append(a[3]) or real(*a))
    with torch.inference_mode(), accel.override(swin_chunk_rows=rows):
        fast = net(mel)
        with accel.override(native_kernels=False):
            slow = net(mel)
    assert calls, "the kernel was not used"
    if rows < 10**9:
        assert max(calls) > 0, "chunks past the first window must pass their mask offset"
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_kernel_is_not_used_where_it_does_not_apply() -> None:
    net = HTSAT(ModelConfig.tiny(htsat_window=8)).eval()
    attn = next(m for m in net.modules() if isinstance(m, WindowAttention))
    x = torch.randn(64, attn.qkv.in_features)
    bf16 = copy.deepcopy(attn).to(torch.bfloat16)
    with torch.inference_mode():
        assert use_native(x, attn)
        assert not use_native(x.bfloat16(), bf16)  # bf16 runs PyTorch's bf16 attention
    assert not use_native(x, attn)  # autograd on: the kernel has no backward
    attn9 = WindowAttention(8, 2, 9).eval()
    with torch.inference_mode():
        assert not use_native(torch.randn(81, 8), attn9)  # 81-token windows
    bias = native_windows(attn, None)
    assert isinstance(bias, NativeWindows) and bias.mask_t.shape[0] == 0


def test_missing_compiler_falls_back_with_a_reason(restore_native, monkeypatch, product_home: Path) -> None:
    monkeypatch.setattr(native, "_compiler", lambda: None)
    native.reset()
    assert not native.available()
    assert "no C++ compiler" in native.status() and "g++" in native.status()
    net = HTSAT(ModelConfig.tiny(htsat_window=8)).eval()
    with torch.inference_mode():
        assert torch.isfinite(net(torch.randn(1, 1001, 64))).all()  # PyTorch's attention instead


def test_switch_turns_the_kernel_off(monkeypatch) -> None:
    monkeypatch.setenv("SAT2SOUND_NATIVE_KERNELS", "0")
    get_settings.cache_clear()
    try:
        assert not accel.options().native_kernels
        assert not native.available() and "SAT2SOUND_NATIVE_KERNELS=0" in native.status()
    finally:
        monkeypatch.delenv("SAT2SOUND_NATIVE_KERNELS")
        get_settings.cache_clear()
    assert native.available(), native.status()
    with accel.override(native_kernels=False):
        assert not native.available() and "switched off" in native.status()


def test_compile_error_names_the_compiler_message(monkeypatch, product_home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    with pytest.raises(native.NativeBuildError, match="compiling the native kernels failed") as info:
        native.build()
    assert "broken.cpp" in str(info.value)
    assert not list(native.library_path().parent.glob("*.so"))  # no half-written library left


def test_build_is_cached_and_keyed_by_source(monkeypatch, product_home: Path, tmp_path: Path) -> None:
    path = native.build()
    assert path.is_file() and str(path).startswith(str(product_home))
    stamp = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == stamp  # second call: nothing rebuilt
    edited = tmp_path / "window_attention.cpp"
    edited.write_text(native.SOURCE.read_text() + "\n// edited\n")
    monkeypatch.setattr(native, "SOURCE", edited)
    assert native.library_path() != path  # another source, another library


def test_build_command_line(product_home: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sat2sound_core.accel.native"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "native kernels ready" in done.stdout and str(product_home) in done.stdout
    strict = [sys.executable, "-m", "sat2sound_core.accel.native", "--strict"]
    done = subprocess.run(strict, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "native kernels ready" in done.stdout, done.stderr
    off = subprocess.run(strict, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "SAT2SOUND_NATIVE_KERNELS": "0"})
    assert off.returncode == 1 and "switched off" in off.stdout  # make must not stamp a missing build


@pytest.mark.parametrize("shape", [(300, 96), (2, 50, 384), (7, 100), (5, 1), (4, 3072)])
def test_layer_norm_equals_pytorch(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=gen) * 3 + 5  # an offset: the variance is taken about the mean
    c = shape[-1]
    weight, bias = torch.randn(c, generator=gen), torch.randn(c, generator=gen)
    ours = native.layer_norm(x, weight, bias, 1e-5)
    exact = F.layer_norm(x.double(), (c,), weight.double(), bias.double(), 1e-5)
    pytorch = F.layer_norm(x, (c,), weight, bias, 1e-5)
    assert ours.shape == x.shape
    assert (ours.double() - exact).abs().max() <= 2 * (pytorch.double() - exact).abs().max() + 1e-6


def test_layer_norm_rejects_bad_inputs() -> None:
    x = torch.randn(4, 8)
    with pytest.raises(RuntimeError, match="float32"):
        native.layer_norm(x.double(), torch.ones(8), torch.zeros(8), 1e-5)
    with pytest.raises(RuntimeError, match="contiguous"):
        native.layer_norm(x.t(), torch.ones(4), torch.zeros(4), 1e-5)
    with pytest.raises(RuntimeError, match="weight and bias"):
        native.layer_norm(x, torch.ones(7), torch.zeros(7), 1e-5)


def test_model_layer_norm_uses_the_kernel_only_where_it_applies(monkeypatch) -> None:
    from sat2sound_core.accel.modules import LayerNorm

    norm = LayerNorm(16)
    x = torch.randn(3, 16)
    norm_bf16 = copy.deepcopy(norm).to(torch.bfloat16)
    calls = []
    real = native.layer_norm
    monkeypatch.setattr(native, "layer_norm", lambda *a: calls.append(1) or real(*a))
    with torch.inference_mode():
        torch.testing.assert_close(norm(x), F.layer_norm(x, (16,), norm.weight, norm.bias), rtol=1e-5, atol=1e-5)
        assert calls == [1]
        norm_bf16(x.bfloat16())  # bf16: PyTorch's
        assert len(calls) == 1
        norm(torch.randn(16, 3).t())  # not contiguous: PyTorch's
        assert len(calls) == 1
        with accel.override(native_kernels=False):  # switched off: PyTorch's
            norm(x)
        assert len(calls) == 1
    out = norm(x.requires_grad_())  # autograd: PyTorch's, gradients flow
    out.sum().backward()
    assert len(calls) == 1 and norm.weight.grad is not None
