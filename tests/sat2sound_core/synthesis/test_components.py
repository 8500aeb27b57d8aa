"""The building blocks of the inference stack (sizes from the tiny reference model)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sat2sound_core import accel
from sat2sound_core.accel import modules as kernels
from sat2sound_core.synthesis import sampler
from sat2sound_core.synthesis.components import build_transformer, use_onednn_linear
from sat2sound_core.synthesis.weights import read_config


def test_transformer_linears_run_through_the_kernel_module(tiny_dir: Path, monkeypatch) -> None:
    """Every nn.Linear of the Flux transformer becomes kernels.Linear (same state_dict keys), and the
    forward equals the stock F.linear forward to float noise."""
    torch.manual_seed(0)
    model = build_transformer(read_config(tiny_dir)).eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is kernels.Linear for m in linears)
    stock = nn.Linear(4, 3)
    assert use_onednn_linear(stock) is stock and type(stock) is kernels.Linear
    assert set(stock.state_dict()) == {"weight", "bias"}

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 645, 64, generator=g)
    ctx = torch.randn(2, 7, model.config.joint_attention_dim, generator=g)
    pooled = torch.randn(2, model.config.pooled_projection_dim, generator=g)
    img_ids, txt_ids = sampler.position_ids(645, 7, torch.device("cpu"))

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return model(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled,
                         timestep=torch.tensor([0.5]), img_ids=img_ids, txt_ids=txt_ids, return_dict=False)[0]

    fused = forward()
    with accel.override(fused_linear=False):  # the plain F.linear path
        plain = forward()
    assert not torch.equal(fused, torch.zeros_like(fused))
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_inplace_snake_is_bit_identical_to_the_stock_activation(tiny_dir: Path) -> None:
    """Every Snake1d of the decoder runs in place, with the stock arithmetic: equal bit for bit (and
    the stock forward, which autograd needs, when gradients are on)."""
    from diffusers.models.autoencoders.autoencoder_oobleck import Snake1d

    from sat2sound_core.synthesis.components import build_vae

    torch.manual_seed(0)
    vae = build_vae(read_config(tiny_dir)).eval()
    snakes = [m for m in vae.modules() if isinstance(m, Snake1d)]
    assert snakes and all(type(m) is not Snake1d for m in snakes)
    snake = snakes[0]
    with torch.no_grad():
        snake.alpha.normal_()
        snake.beta.normal_()
    x = torch.randn(2, snake.alpha.shape[1], 300)
    before = x.clone()
    with torch.no_grad():
        fast = snake(x)
        stock = Snake1d.forward(snake, x)
    assert torch.equal(fast, stock) and not torch.equal(fast, x)
    assert torch.equal(x, before)  # the input is not modified
    y = x.clone().requires_grad_(True)
    snake(y).sum().backward()  # the in-place path would break autograd
    assert y.grad is not None and torch.isfinite(y.grad).all()
