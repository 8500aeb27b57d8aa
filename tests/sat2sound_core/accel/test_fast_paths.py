"""The CPU fast paths are in effect inside the whole model, chosen per device and switched as told."""

from __future__ import annotations

import collections
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sat2sound_core import accel
from sat2sound_core.accel import native, onednn
from sat2sound_core.accel.modules import LayerNorm, Linear
from sat2sound_core.accel.swin import WindowBlock
from sat2sound_core.model import ModelConfig, Sat2Sound


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: torch._ops.OpOverload, types: object, args: tuple[object, ...] = (),
                           kwargs: dict[str, object] | None = None) -> object:
        self.count[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _ops(fn: Callable[[], object]) -> collections.Counter[str]:
    with torch.inference_mode(), _Ops() as ops:
        fn()
    return ops.count


def _model() -> Sat2Sound:
    torch.manual_seed(0)
    return Sat2Sound(ModelConfig.tiny(htsat_window=8))


def test_audio_tower_runs_on_the_native_and_onednn_kernels() -> None:
    assert native.available(), native.status()
    model = _model()
    tower = model.audio_encoder.model.audio_enc
    mel = torch.randn(1, 1001, 64)
    ops = _ops(lambda: model.encode_audio(mel))
    norms = [m for m in tower.modules() if isinstance(m, LayerNorm)]
    blocks = [m for m in tower.modules() if isinstance(m, WindowBlock)]
    linears = [m for m in tower.modules() if isinstance(m, Linear)]
    # batch 1 fits one piece per block: every LayerNorm once, every block's attention once
    assert ops["sat2sound.layer_norm.default"] == len(norms) > 0
    assert ops["sat2sound.window_attention.default"] == len(blocks) > 0
    assert ops["aten.scaled_dot_product_attention.default"] == 0
    # the residual adds of every Swin block (attention and MLP) and of the value path are fused in
    assert ops["mkldnn._linear_pointwise.binary"] == 2 * len(blocks) + 1
    # every tower weight and the codebook are reordered once, on first use, and then reused
    assert ops["mkldnn._reorder_linear_weight.default"] == len(linears) + 1
    assert all(getattr(m.weight, onednn._MARK, None) is not None for m in linears)
    assert _ops(lambda: model.encode_audio(mel))["mkldnn._reorder_linear_weight.default"] == 0


def test_image_tower_uses_onednn_without_packed_weights() -> None:
    model = _model()
    images = torch.randn(1, 3, 224, 224)
    ops = _ops(lambda: model.encode_image(images))
    linears = [m for m in model.satmae_backbone.modules() if isinstance(m, nn.Linear)]
    assert ops["mkldnn._linear_pointwise.default"] >= len(linears) > 0
    assert ops["aten.linear.default"] == 1  # only the codebook query's last layer stays a plain nn.Linear
    assert not any(getattr(m.weight, onednn._MARK, None) is not None for m in linears)


def test_switches_reach_a_built_model() -> None:
    model = _model()
    mel = torch.randn(1, 1001, 64)
    model.encode_audio(mel)  # processors chosen under the default options
    with accel.override(native_kernels=False):
        ops = _ops(lambda: model.encode_audio(mel))
    assert not any(name.startswith("sat2sound.") for name in ops)
    assert ops["aten.scaled_dot_product_attention.default"] > 0
    with accel.override(fused_linear=False):
        ops = _ops(lambda: model.encode_audio(mel))
    assert not any(name.startswith("mkldnn.") for name in ops)
    assert _ops(lambda: model.encode_audio(mel))["sat2sound.window_attention.default"] > 0  # back on


def test_bf16_keeps_the_residual_stream_and_layer_norms_on_their_kernels() -> None:
    model = _model().set_precision("bf16")
    ops = _ops(lambda: model.encode_audio(torch.randn(1, 1001, 64)))
    assert ops["sat2sound.window_attention.default"] == 0  # bf16 attention: PyTorch's
    assert ops["sat2sound.layer_norm.default"] > 0  # LayerNorms stay float32: native
    assert ops["mkldnn._linear_pointwise.binary"] == 0  # a bf16 GEMM is added to the float32 stream apart


def test_processors_are_chosen_for_the_device() -> None:
    """Off the CPU (here the meta device, standing in for a GPU) every module runs plain PyTorch and
    the Swin blocks run in one piece; back on the CPU the fast paths return."""
    from sat2sound_core.accel.modules import NativeLayerNorm, OneDNNLinear, TorchLayerNorm, TorchLinear
    from sat2sound_core.accel.swin import SwinRunner

    model = _model()

    def kinds() -> set[type]:
        return {type(m.processor) for m in model.modules() if isinstance(m, LayerNorm | Linear | WindowBlock)}

    assert kinds() == {OneDNNLinear, NativeLayerNorm, SwinRunner}
    assert {m.processor.chunk_rows for m in model.modules() if isinstance(m, WindowBlock)} == {
        accel.options().swin_chunk_rows}
    model.to("meta")
    assert kinds() == {TorchLinear, TorchLayerNorm, SwinRunner}
    assert {m.processor for m in model.modules() if isinstance(m, WindowBlock)} == {SwinRunner(None, native=False)}
    model.to_empty(device="cpu")
    assert kinds() == {OneDNNLinear, NativeLayerNorm, SwinRunner}
