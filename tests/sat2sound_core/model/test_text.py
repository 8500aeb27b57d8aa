"""The FLAN-T5 text tower on the tiny reference T5: hidden states and masks, lazy building, Sat2Sound's text path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sat2sound_core.common.errors import InputError
from sat2sound_core.model.text import LazyTextEncoder, TextEncoder
from sat2sound_core.weights.t5 import load_text_encoder
from tests.fixtures.t5_folder import ATOL, CAPTIONS, golden_tiny, t5_dir, tiny, use_tangoflux

__all__ = ["golden_tiny", "t5_dir", "tiny"]  # fixtures


def test_tangoflux_copy_reproduces_the_official_t5_states(
    t5_dir: Path, tiny: Path, golden_tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_tangoflux(monkeypatch, tiny)
    enc = load_text_encoder("cpu", download=False)
    c0, c1 = golden_tiny["cases"]
    hidden, mask = enc.encode(CAPTIONS)
    assert hidden.dtype == torch.float32 and mask.dtype == torch.bool and hidden.shape == (2, 8, 32)
    assert mask.tolist() == [[True] * 8, [True] * 6 + [False] * 2]
    assert torch.allclose(hidden[0], c0["t5_hidden_cond"][0], atol=ATOL)
    assert torch.allclose(hidden[1, :6], c1["t5_hidden_cond"][0], atol=ATOL)
    # the empty caption is just </s>, padded: TangoFlux's unconditional states, pads included
    uncond, umask = enc.encode(["", CAPTIONS[0]])
    assert umask[0].tolist() == [True] + [False] * 7
    assert torch.allclose(uncond[0], c0["t5_hidden_uncond"][0], atol=ATOL)


def test_lazy_encoder_builds_once_on_first_use(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_tangoflux(monkeypatch, tiny)
    calls: list[torch.device] = []

    def loader(dev: torch.device) -> TextEncoder:
        calls.append(dev)
        return load_text_encoder(dev, download=False)

    lazy = LazyTextEncoder("cpu", loader=loader)
    assert not lazy.loaded and calls == []
    h1, _ = lazy.encode(CAPTIONS)
    h2, _ = lazy.encode(CAPTIONS)
    assert calls == [torch.device("cpu")] and lazy.loaded and torch.equal(h1, h2)
    with pytest.raises(InputError):
        lazy.encode([])
    with pytest.raises(InputError):
        lazy.encode([3])  # type: ignore[list-item]


def test_sat2sound_encode_text_runs_the_attached_encoder(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound

    use_tangoflux(monkeypatch, tiny)
    torch.manual_seed(0)
    model = Sat2Sound(ModelConfig.tiny(text_dim=32))
    enc = load_text_encoder("cpu", download=False)
    model.text_encoder = enc
    hidden, mask = enc.encode(CAPTIONS)
    via_text = model.encode_text(CAPTIONS)
    via_states = model.encode_text_states(hidden, mask)
    assert torch.equal(via_text.embedding, via_states.embedding)
