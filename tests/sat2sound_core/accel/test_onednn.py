"""Prepacked GEMM weights: the same numbers as the plain weights, refreshed when a weight changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sat2sound_core.accel import onednn as kernels


@pytest.fixture()
def packing():
    was = kernels.packing_enabled()
    kernels.set_packing(True)
    yield
    kernels.set_packing(was)


def _outputs(layer: nn.Linear, x: torch.Tensor, residual: torch.Tensor) -> list[torch.Tensor]:
    return [kernels.linear(x, layer.weight, layer.bias), kernels.linear_gelu(x, layer),
            kernels.linear_add(x, layer, residual)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_give_the_same_results(packing, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(96, 288).to(dtype)
    x = torch.randn(300, 96)
    residual = torch.randn(300, 288)
    with torch.inference_mode():
        plain = _outputs(layer, x, residual)
        kernels.prepack(layer)
        packed = _outputs(layer, x, residual)
        mark = getattr(layer.weight, kernels._MARK)
        assert mark is not None and mark[1].is_mkldnn  # the blocked copy was made and is in use
        again = _outputs(layer, x, residual)
    for a, b, c in zip(plain, packed, again, strict=True):
        assert torch.equal(a, b) and torch.equal(b, c)


def test_packed_copy_follows_weight_changes(packing) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    kernels.prepack(layer)
    x = torch.randn(5, 16)
    with torch.inference_mode():
        before = kernels.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        layer.weight.mul_(2)  # in place: a new version of the same tensor
    with torch.inference_mode():
        after = kernels.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(after - layer.bias, 2 * (before - layer.bias), rtol=1e-6, atol=1e-6)
    layer.load_state_dict({"weight": torch.zeros(8, 16), "bias": torch.zeros(8)})
    with torch.inference_mode():
        assert torch.equal(kernels.linear(x, layer.weight, layer.bias), torch.zeros(5, 8))


def test_no_packed_copy_while_autograd_records(packing) -> None:
    layer = nn.Linear(4, 3)
    kernels.prepack(layer)
    assert kernels._packed(layer.weight) is layer.weight  # grad mode, a trainable weight: plain
    assert getattr(layer.weight, kernels._MARK) is None
    with torch.no_grad():
        assert kernels._packed(layer.weight) is not layer.weight


def test_switch_off_keeps_plain_weights() -> None:
    was = kernels.packing_enabled()
    kernels.set_packing(False)
    try:
        layer = nn.Linear(4, 3)
        kernels.prepack(layer)
        with torch.inference_mode():
            kernels.linear(torch.randn(2, 4), layer.weight, layer.bias)
        assert getattr(layer.weight, kernels._MARK) is None
    finally:
        kernels.set_packing(was)


def test_audio_tower_marks_its_weights(packing) -> None:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.htsat import HTSAT

    net = HTSAT(ModelConfig.tiny()).eval()
    with torch.inference_mode():
        net(torch.randn(1, 1001, 64))
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert linears and all(getattr(m.weight, kernels._MARK, None) is not None for m in linears)
