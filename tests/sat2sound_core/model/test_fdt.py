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


def test_sparsemax_shortcut_equals_the_full_sort(monkeypatch) -> None:
    """Rows of codebook size take the top-256 shortcut; the result is bit-identical to sorting all
    scores, and a row whose support is longer than 256 falls back to the full sort."""
    import sat2sound_core.model.fdt as fdt

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 16000, generator=gen) * 3
    z[1] = torch.randn(16000, generator=gen) * 1e-4  # nearly flat: support of thousands of codes
    z[2, :400] = 50.0  # 400 tied maxima
    fast = sparsemax(z)
    monkeypatch.setattr(fdt, "_SUPPORT_GUESS", 10**9)
    slow = sparsemax(z)
    assert torch.equal(fast, slow)
    assert int((slow[1] > 0).sum()) > 256 and int((slow[2] > 0).sum()) == 400
    torch.testing.assert_close(slow, _reference_sparsemax(z), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(fdt, "_SUPPORT_GUESS", 256)
    easy = z[[0, 3, 4, 5]]  # all supports short: no fallback needed
    assert torch.equal(sparsemax(easy), slow[[0, 3, 4, 5]])


def test_sparse_mix_reads_only_the_used_codes() -> None:
    from sat2sound_core.model.fdt import sparse_mix

    gen = torch.Generator().manual_seed(1)
    codebook = torch.randn(1000, 32, generator=gen)
    weights = sparsemax(torch.randn(4, 1000, generator=gen) * 5)
    assert int((weights != 0).any(0).sum()) < 1000 // 8
    torch.testing.assert_close(sparse_mix(weights, codebook), weights @ codebook, rtol=1e-6, atol=1e-6)
    dense = torch.softmax(torch.randn(4, 1000, generator=gen), -1)  # every code used: plain matmul
    torch.testing.assert_close(sparse_mix(dense, codebook), dense @ codebook, rtol=1e-6, atol=1e-6)
    zero_rows = torch.zeros(2, 1000)
    assert torch.equal(sparse_mix(zero_rows, codebook), torch.zeros(2, 32))
