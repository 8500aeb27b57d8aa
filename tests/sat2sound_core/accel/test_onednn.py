"""Prepacked GEMM weights: the same numbers as the plain weights, refreshed when a weight changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sat2sound_core import accel
from sat2sound_core.accel import onednn as kernels
from sat2sound_core.accel.modules import Linear, OneDNNLinear, TorchLinear, linear, prepack
from sat2sound_core.common.errors import ConfigError


@pytest.fixture()
def packing():
    with accel.override(packed_weights=True):
        yield


def _layer(dtype: torch.dtype = torch.float32, shape: tuple[int, int] = (96, 288)) -> Linear:
    return Linear(*shape).to(dtype)


def _outputs(layer: Linear, x: torch.Tensor, residual: torch.Tensor) -> list[torch.Tensor]:
    return [layer(x), layer(x, activation="gelu"), layer(x, residual=residual),
            linear(x, layer.weight, layer.bias, packed=layer.packed)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_give_the_same_results(packing, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer = _layer(dtype)
    x = torch.randn(300, 96)
    residual = torch.randn(300, 288)
    with torch.inference_mode():
        plain = _outputs(layer, x, residual)
        assert getattr(layer.weight, kernels._MARK, None) is None  # not marked: no blocked copy
        prepack(layer)
        assert layer.processor == OneDNNLinear(packed=True)
        packed = _outputs(layer, x, residual)
        mark = getattr(layer.weight, kernels._MARK)
        assert mark is not None and mark[1].is_mkldnn  # the blocked copy was made and is in use
        again = _outputs(layer, x, residual)
    for a, b, c in zip(plain, packed, again, strict=True):
        assert torch.equal(a, b) and torch.equal(b, c)


def test_packed_copy_follows_weight_changes(packing) -> None:
    torch.manual_seed(0)
    layer = _layer(shape=(16, 8))
    prepack(layer)
    x = torch.randn(5, 16)
    with torch.inference_mode():
        before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(2)  # in place: a new version of the same tensor
    with torch.inference_mode():
        after = layer(x)
    torch.testing.assert_close(after - layer.bias, 2 * (before - layer.bias), rtol=1e-6, atol=1e-6)
    layer.load_state_dict({"weight": torch.zeros(8, 16), "bias": torch.zeros(8)})
    with torch.inference_mode():
        assert torch.equal(layer(x), torch.zeros(5, 8))


def test_no_packed_copy_while_autograd_records(packing) -> None:
    layer = _layer(shape=(4, 3))
    assert kernels.packed_weight(layer.weight) is layer.weight  # grad mode, a trainable weight: plain
    assert getattr(layer.weight, kernels._MARK, None) is None
    with torch.no_grad():
        assert kernels.packed_weight(layer.weight) is not layer.weight


def test_switch_off_keeps_plain_weights() -> None:
    with accel.override(packed_weights=False):
        layer = _layer(shape=(4, 3))
        prepack(layer)
        with torch.inference_mode():
            layer(torch.randn(2, 4))
            linear(torch.randn(2, 4), layer.weight, layer.bias, packed=True)
        assert getattr(layer.weight, kernels._MARK, None) is None
        assert layer.processor == OneDNNLinear(packed=False)


def test_processor_follows_device_dtype_and_switch() -> None:
    """The kernel is chosen for the layer's dtype and the options, and chosen again when they change."""
    layer = _layer(shape=(4, 3))
    assert isinstance(layer.processor, OneDNNLinear)
    layer.double()  # oneDNN has no float64 GEMM here
    assert isinstance(layer.processor, TorchLinear)
    layer.float()
    assert isinstance(layer.processor, OneDNNLinear)
    with accel.override(fused_linear=False):
        assert isinstance(layer.processor, TorchLinear)
    assert isinstance(layer.processor, OneDNNLinear)
    with pytest.raises(ConfigError, match="fused_linear"), accel.override(fused_linar=False):
        pass  # a misspelt switch names the valid ones


def test_audio_tower_marks_its_weights(packing) -> None:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.htsat import HTSAT

    net = HTSAT(ModelConfig.tiny()).eval()
    with torch.inference_mode():
        net(torch.randn(1, 1001, 64))
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert linears and all(getattr(m.weight, kernels._MARK, None) is not None for m in linears)
