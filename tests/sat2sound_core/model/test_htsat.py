"""HTS-AT pieces: Swin constants, fold, value path, pooling to time-ordered frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sat2sound_core import accel
from sat2sound_core.accel import swin
from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.htsat import (
    HTSAT,
    PatchMerging,
    ValuePathBlock,
    merge_index,
    relative_position_index,
    shifted_window_mask,
    window_order,
)
from tests.conftest import reference_file


def _make_weights(folder: Path):  # the reference generator builds the official constants
    spec = importlib.util.spec_from_file_location("make_weights", reference_file(folder, "make_weights.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_swin_constants_match_the_reference_generator(sat2sound_reference: Path) -> None:
    mw = _make_weights(sat2sound_reference)
    assert torch.equal(relative_position_index(8), mw.swin_relative_position_index(64))
    for side in (64, 32, 16):
        n_windows = (side // 8) ** 2
        assert torch.equal(shifted_window_mask(side, 8, 4), mw.swin_shift_mask(n_windows, 64)), side


def test_window_order_is_roll_then_partition() -> None:
    side, window, c = 16, 4, 3
    x = torch.randn(2, side, side, c)
    for shift in (0, 2):
        rolled = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        per = side // window
        expect = rolled.reshape(2, per, window, per, window, c).permute(0, 1, 3, 2, 4, 5).reshape(2, -1, c)
        order = window_order(side, window, shift)
        got = x.reshape(2, -1, c).index_select(1, order)
        assert torch.equal(got, expect), shift
        back = got.index_select(1, torch.argsort(order)).reshape(2, side, side, c)
        assert torch.equal(back, x)


def test_relative_position_index_formula() -> None:
    idx = relative_position_index(8)
    # token 9 = (1,1), token 0 = (0,0): Δrow = Δcol = 1 -> (1+7)*15 + (1+7)
    assert idx[9, 0] == 8 * 15 + 8 and idx[0, 0] == 7 * 15 + 7


def test_fold_places_time_chunks_under_each_other() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    net = HTSAT(cfg).eval()
    mel = torch.randn(1, 1001, 64)
    img = net.fold(mel)
    assert img.shape == (1, 1, 256, 256)
    bn = net.bn0
    normed = (mel - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5) * bn.weight + bn.bias
    stretched = F.interpolate(normed[:, None], (1024, 64), mode="bicubic", align_corners=True)[0, 0]
    chunk, mel_bin, col = 2, 5, 17
    assert torch.allclose(img[0, 0, chunk * 64 + mel_bin, col], stretched[chunk * 256 + col, mel_bin], atol=1e-6)


def test_patch_merging_concat_order() -> None:
    merge = PatchMerging(1, 1e-5)
    with torch.no_grad():
        merge.norm.weight.fill_(1.0)
        merge.norm.bias.zero_()
        merge.reduction.weight.copy_(torch.eye(2, 4))  # keep the first two concatenated channels
    x = torch.arange(16.0).reshape(1, 16, 1)  # row-major tokens of a 4×4 map: value = row*4 + col
    out = merge(x, merge_index(4, torch.arange(16), torch.arange(4))).reshape(1, 2, 2, 2)
    # first two entries of [x(0,0), x(1,0), x(0,1), x(1,1)] are normalised (0, 4): negative, then positive
    assert out.shape == (1, 2, 2, 2) and out[0, 0, 0, 0] < 0 < out[0, 0, 0, 1]


def test_value_path_block_formula() -> None:
    torch.manual_seed(0)
    block = ValuePathBlock(6, 1e-5)
    x = torch.randn(2, 3, 3, 6)
    v = x + block.attn.proj(block.attn.v_proj(block.norm1(x)))
    assert torch.allclose(block(x), v + block.norm2(v), atol=1e-6)


def test_frames_are_time_ordered_and_local() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    net = HTSAT(cfg).eval()
    mel = torch.randn(1, 1001, 64)
    changed = mel.clone()
    changed[0, 900:] += 5.0  # only the end of the clip changes
    with torch.inference_mode():
        a, b = net(mel), net(changed)
    assert a.shape == (1, cfg.n_audio_frames, cfg.audio_frame_dim)
    diff = (a - b).abs().amax(dim=-1)[0]
    # the first frames are out of the receptive field of the last 10 % of the clip
    assert diff[: cfg.n_audio_frames // 2].max() < diff[-4:].max() * 1e-3 + 1e-6


def test_last_block_has_no_dead_parameters() -> None:
    keys = set(HTSAT(ModelConfig()).state_dict())
    last = "layers.3.blocks.1."
    assert {k[len(last):] for k in keys if k.startswith(last)} == {
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
        "attn.v_proj.weight", "attn.v_proj.bias", "attn.proj.weight", "attn.proj.bias",
    }
    assert not any(k.startswith(("tscam_conv", "head", "audio_feats_extractor")) for k in keys)
    assert "layers.0.blocks.1.attn_mask" in keys and "layers.3.blocks.0.attn_mask" not in keys


@pytest.fixture(params=["native", "pytorch"])
def attention_path(request):
    """Run a test with the native window attention and again with PyTorch's."""
    from sat2sound_core.accel import native

    with accel.override(native_kernels=request.param == "native"):
        if request.param == "native":
            assert native.available(), native.status()
        yield request.param


def test_chunked_blocks_equal_one_piece(attention_path) -> None:
    """Swin blocks run in chunks of whole windows; any chunk size (down to one window, i.e. smaller
    than one item, where the shift mask must be sliced per window) gives the unchunked frames."""
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    net = HTSAT(cfg).eval()
    mel = torch.randn(3, 1001, 64)
    window_tokens = cfg.htsat_window ** 2
    with torch.inference_mode(), accel.override(swin_chunk_rows=10**9):
        whole = net(mel)
    for rows in (1, window_tokens, 3 * window_tokens, 5 * window_tokens + 7):
        with torch.inference_mode(), accel.override(swin_chunk_rows=rows):
            chunked = net(mel)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6, msg=f"chunk rows {rows}")


def _runners(net: HTSAT) -> list[swin.SwinRunner]:
    return [m.processor for m in net.modules() if isinstance(m, swin.WindowBlock)]


def test_gpu_layout_equals_cpu_chunks(attention_path) -> None:
    """The GPU layout (each block in one piece, a shifted block's per-window bias folded into the head
    axis and broadcast over the items instead of tiled) gives the CPU's chunked frames; run on the CPU."""
    torch.manual_seed(0)
    net = HTSAT(ModelConfig.tiny()).eval()
    mel = torch.randn(3, 1001, 64)
    with torch.inference_mode(), accel.override(swin_chunk_rows=64):
        chunks = net(mel)
        assert {r.chunk_rows for r in _runners(net)} == {64}
        swin.set_runner(net, swin.SwinRunner(None, native=True))  # the GPU layout, put in from outside
        assert {r.chunk_rows for r in _runners(net)} == {None}
        folded = net(mel)
        single = net(mel[:1])  # one item: the bias covers every window, nothing to fold
    torch.testing.assert_close(folded, chunks, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(single, chunks[:1], rtol=1e-5, atol=1e-6)
    assert {r.chunk_rows for r in _runners(net)} == {accel.options().swin_chunk_rows}  # options changed: chosen again
    assert swin.runner_for(torch.device("cpu"), accel.options()).chunk_rows == accel.options().swin_chunk_rows
    assert swin.runner_for(torch.device("cuda"), accel.options()) == swin.SwinRunner(None, native=False)


def test_gather_tokens_equals_index_select() -> None:
    from sat2sound_core.model.htsat import gather_tokens

    x = torch.randn(3, 20, 5)
    index = torch.randperm(20)
    assert torch.equal(gather_tokens(x, index), x.index_select(1, index))
    assert torch.equal(gather_tokens(x[:1], index[:7]), x[:1].index_select(1, index[:7]))
    assert torch.equal(gather_tokens(x, index[:7]), x.index_select(1, index[:7]))
