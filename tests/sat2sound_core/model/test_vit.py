"""SatMAE ViT pieces: GSD positional embedding, patch embedding as a GEMM, block structure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.vit import PatchEmbed, SatMAEBackbone, ground_resolution, gsd_sincos_pos_embed
from tests.conftest import reference_file


def test_pos_embed_layout_column_block_first() -> None:
    res = torch.tensor([2.0])
    pe = gsd_sincos_pos_embed(8, 3, res)[0]  # quarter = 2 -> ω = [1, 1/100]
    assert pe.shape == (9, 8)
    token = 1 * 3 + 2  # row 1, col 2
    omega = torch.tensor([1.0, 0.01])
    col, row = 2 * 2.0 * omega, 1 * 2.0 * omega
    expect = torch.cat([col.sin(), col.cos(), row.sin(), row.cos()])
    assert torch.allclose(pe[token], expect, atol=1e-6)


def test_pos_embed_is_per_sample() -> None:
    res = torch.tensor([0.6, 3.0])
    both = gsd_sincos_pos_embed(768, 14, res)
    assert torch.equal(both[1], gsd_sincos_pos_embed(768, 14, res[1:])[0])
    assert not torch.allclose(both[0], both[1])


def test_pos_embed_matches_golden_for_every_source_and_zoom(sat2sound_reference: Path) -> None:
    shared = torch.load(reference_file(sat2sound_reference, "golden_shared.pt"), weights_only=False)
    checked = 0
    for key, golden in shared.items():
        if not key.startswith("pos_embed/"):
            continue
        _, sat_type, zl = key.split("/")
        zoom = int(zl[2:])
        res = ground_resolution([zoom], sat_type)
        assert torch.equal(res[0], shared[f"gsd/{sat_type}/{zl}"])
        pe = gsd_sincos_pos_embed(768, 14, res)[0]
        assert (pe - golden).abs().max() <= 1e-4, key
        checked += 1
    assert checked >= 8


def test_patch_embed_equals_the_convolution() -> None:
    torch.manual_seed(0)
    pe = PatchEmbed(16, 3, 24)
    x = torch.randn(2, 3, 64, 48)
    conv = F.conv2d(x, pe.proj.weight, pe.proj.bias, stride=16).flatten(2).transpose(1, 2)
    assert torch.allclose(pe(x), conv, atol=1e-5)


def test_backbone_shapes_and_scale_dependence() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    net = SatMAEBackbone(cfg).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        a = net(x, torch.tensor([0.6, 0.6]))
        b = net(x, torch.tensor([0.6, 3.0]))
    assert a.shape == (2, 196, cfg.fc_dim)
    assert torch.allclose(a[0], b[0], atol=1e-6) and not torch.allclose(a[1], b[1], atol=1e-3)


def test_no_class_token_or_final_norm_parameters() -> None:
    keys = set(SatMAEBackbone(ModelConfig.tiny()).state_dict())
    assert not any(k.endswith(("cls_token", "pos_embed")) or k.startswith("backbone.norm.") for k in keys)
    assert "backbone.blocks.0.attn.qkv.weight" in keys and "projector.linear2.bias" in keys


@pytest.mark.parametrize("heads", [1, 2])
def test_attention_equals_manual_softmax(heads: int) -> None:
    from sat2sound_core.model.vit import Attention

    torch.manual_seed(1)
    attn = Attention(8, heads)
    x = torch.randn(2, 5, 8)
    qkv = attn.qkv(x).reshape(2, 5, 3, heads, 8 // heads).permute(2, 0, 3, 1, 4)
    w = (qkv[0] @ qkv[1].transpose(-1, -2) / (8 // heads) ** 0.5).softmax(-1)
    manual = attn.proj((w @ qkv[2]).transpose(1, 2).reshape(2, 5, 8))
    assert torch.allclose(attn(x), manual, atol=1e-6)
