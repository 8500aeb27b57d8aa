"""Prefix decoding: decoding only the latent frames a duration needs (+ margin) equals the full decode.

The margin is measured here on the Oobleck decoder architecture (the tiny reference VAE has the real
strides, kernels and dilations; only the widths are smaller, and the receptive field does not depend
on widths). The full-size random-weight VAE gives the same picture (docs/synthesis.md).
"""

from __future__ import annotations

import pytest
import torch

from sat2sound_core.synthesis import sampler
from sat2sound_core.synthesis.components import HOP, SAMPLE_RATE
from tests.sat2sound_core.synthesis.conftest import rel_err


@pytest.fixture(scope="module")
def full(golden, tiny_synth):
    z = golden["cases"][0]["final_latents"]
    with torch.no_grad():
        return z, tiny_synth.vae.decode(z.transpose(1, 2).to(tiny_synth.device)).sample[0].cpu()


def test_measured_receptive_field_fits_the_margin(tiny_synth):
    """Perturb one latent frame: exactly which output samples change? (zero elsewhere, bit for bit)"""
    torch.manual_seed(3)
    z = torch.randn(1, 64, 120)
    j = 60
    z2 = z.clone()
    z2[:, :, j] += 1.0
    with torch.no_grad():
        a = tiny_synth.vae.decode(z).sample[0]
        b = tiny_synth.vae.decode(z2).sample[0]
    changed = ((a - b).abs().amax(0) > 0).nonzero().flatten()
    left_reach = j - changed.min().item() / HOP  # frames to the left a latent frame reaches
    assert 9.0 < left_reach < 10.0  # measured: 9.25 frames
    assert left_reach <= sampler.DECODE_MARGIN_FRAMES


@pytest.mark.parametrize("seconds", [10.0, 100 * HOP / SAMPLE_RATE, 2.0, 29.9])
def test_prefix_decode_equals_full(full, tiny_synth, seconds):
    z, wave = full
    n = sampler.samples_for(seconds)
    prefix = sampler.decode(tiny_synth.vae, z, seconds)
    assert prefix.shape == (1, 2, n)
    assert rel_err(prefix[0], wave[:, :n]) <= 1e-5  # float noise is ~1e-6


def test_eight_frames_of_margin_are_not_enough(full, tiny_synth):
    z, wave = full
    n = sampler.samples_for(10.0)
    short = sampler.decode(tiny_synth.vae, z, 10.0, margin=8)
    assert rel_err(short[0], wave[:, :n]) > 1e-4  # measured 3.5e-4 for this latent


def test_frames_for():
    assert sampler.frames_for(10.0, 645) == 216 + sampler.DECODE_MARGIN_FRAMES
    assert sampler.frames_for(30.0, 645) == 645
