"""Fixtures for the synthesis tests: the tiny TangoFlux in the official layout and its golden outputs."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import reference_file


@pytest.fixture(scope="session")
def tiny_dir(tangoflux_reference: Path) -> Path:
    path = tangoflux_reference / "tiny"
    for name in ("config.json", "tangoflux.safetensors", "vae.safetensors", "vocab.json"):
        reference_file(path, name)
    return path


@pytest.fixture(scope="session")
def golden(tangoflux_reference: Path) -> dict:
    return torch.load(reference_file(tangoflux_reference, "golden_tiny.pt"), weights_only=True)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread for each test here (restored after it, so other packages' tests are unaffected):
    the CI machine is small and shared, and 1 vs 2 threads differ only by ~1e-6 (SYNTHESIS.md §6)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_synth(tiny_dir: Path, test_device: str):
    """The tiny model loaded once (fp32, on ``SAT2SOUND_TEST_DEVICE`` (CPU by default), no disk cache)."""
    from sat2sound_core.synthesis import load_synthesizer

    return load_synthesizer(tiny_dir, device=test_device, precision="fp32", cache=False)


@pytest.fixture()
def cached_synth(tiny_synth, tmp_path: Path):
    """The tiny synthesiser with a fresh disk cache in ``tmp_path/cache`` (modules shared)."""
    from sat2sound_core.synthesis.cache import AudioCache

    synth = copy.copy(tiny_synth)
    synth.cache = AudioCache(tmp_path / "cache")
    return synth


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a − b| / max|b| (the SYNTHESIS.md tolerance measure)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    a, b = a.detach().cpu(), b.detach().cpu()
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())
