"""Codebook query: sparsemax, pooling order, multiplicative text mask."""

from __future__ import annotations

import torch

from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.fdt import FDT, sparsemax


def _reference_sparsemax(z: torch.Tensor) -> torch.Tensor:
    # projection onto the simplex, written independently (per row, plain loop)
    out = torch.empty_like(z)
    for i, row in enumerate(z):
        s, _ = torch.sort(row.double(), descending=True)
        cssv = torch.cumsum(s, 0) - 1
        k = torch.arange(1, len(s) + 1, dtype=torch.float64)
        rho = int((s - cssv / k > 0).nonzero().max())
        tau = cssv[rho] / (rho + 1)
        out[i] = torch.clamp(row.double() - tau, min=0).float()
    return out


def test_sparsemax_is_a_sparse_projection_onto_the_simplex() -> None:
    torch.manual_seed(0)
    z = torch.randn(4, 300) * torch.tensor([[0.01], [0.5], [3.0], [30.0]])
    w = sparsemax(z)
    assert torch.allclose(w.sum(-1), torch.ones(4), atol=1e-5)
    assert (w >= 0).all()
    assert torch.allclose(w, _reference_sparsemax(z), atol=1e-6)
    assert (w[3] > 0).sum() < (w[0] > 0).sum()  # sharper inputs -> sparser weights
    assert torch.equal(sparsemax(torch.tensor([[5.0, 1.0, 0.0]])), torch.tensor([[1.0, 0.0, 0.0]]))


def _tiny_fdt() -> FDT:
    torch.manual_seed(0)
    return FDT(ModelConfig.tiny()).eval()


def test_query_steps() -> None:
    fdt = _tiny_fdt()
    x = torch.randn(2, 5, 32)
    with torch.inference_mode():
        out = fdt.query(x, fdt.img_query_model, return_scores=True)
        q = fdt.img_query_model(x)
        scores = q @ fdt.space_dict.t()
        assert out.scores is not None and torch.allclose(out.scores, scores, atol=1e-5)
        pooled = (scores / fdt.scale / 1000).amax(1)
        assert torch.allclose(out.weights, sparsemax(pooled), atol=1e-6)
        assert torch.allclose(out.embedding, out.weights @ fdt.space_dict, atol=1e-6)


def test_text_mask_multiplies_scores() -> None:
    fdt = _tiny_fdt()
    x = torch.randn(1, 4, 24)
    mask = torch.tensor([[True, True, False, False]])
    with torch.inference_mode():
        out = fdt.query(x, fdt.txt_query_model, mask=mask, return_scores=True)
        raw = fdt.txt_query_model(x) @ fdt.space_dict.t()
        # padded tokens score 0 and still take part in the max-pool (official bug kept)
        pooled = torch.maximum(raw[:, :2].amax(1), torch.zeros(1, raw.shape[-1])) / fdt.scale / 1000
        assert torch.allclose(out.weights, sparsemax(pooled), atol=1e-6)
        assert out.scores is not None and torch.allclose(out.scores, raw, atol=1e-5)  # raw, unmasked
