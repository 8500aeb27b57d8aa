"""The tiny TangoFlux reproduces the official code's outputs (golden_tiny.pt) stage by stage.

Tolerance: max|Δ| ≤ 1e-4 · max|ref| for every tensor (SYNTHESIS.md §6, ~30× the measured float noise);
ids, masks, sigmas and timesteps must be exactly equal.
"""

from __future__ import annotations

import pytest
import torch

from sat2sound_core.synthesis import sampler
from tests.sat2sound_core.synthesis.conftest import rel_err

TOL = 1e-4


@pytest.fixture(scope="module", params=[0, 1], ids=["birds", "traffic"])
def case_run(request, golden, tiny_synth):
    case = golden["cases"][request.param]
    trace: dict = {}
    wave = tiny_synth.synthesize_from_tokens(
        case["cond_input_ids"], case["cond_attention_mask"], duration=10, steps=4, guidance=4.5,
        init_noise=case["init_noise"], trace=trace,
    )
    return case, trace, wave


def test_tokenizer_gives_the_golden_ids(golden, tiny_synth):
    for case in golden["cases"]:
        tokens = tiny_synth.tokenize(case["caption"])
        assert torch.equal(tokens.input_ids, case["cond_input_ids"])
        assert torch.equal(tokens.attention_mask, case["cond_attention_mask"])


def test_noise_recipe_matches(golden):
    from sat2sound_core.synthesis.synthesizer import initial_noise

    for seed, case in zip(golden["meta"]["noise_seeds"], golden["cases"], strict=True):
        assert torch.equal(initial_noise(seed), case["init_noise"])


def test_sigmas_and_timesteps_exact(golden):
    case = golden["cases"][0]
    timesteps, sigmas = sampler.sigmas_for(4)
    assert torch.equal(timesteps, case["scheduler_timesteps"])
    assert torch.equal(sigmas, case["scheduler_sigmas"])
    assert torch.equal(timesteps / 1000, case["transformer_timesteps"])


def test_conditioning(case_run):
    case, trace, _ = case_run
    assert torch.equal(trace["input_ids"].cpu(), torch.cat([case["uncond_input_ids"], case["cond_input_ids"]]))
    assert torch.equal(trace["attention_mask"].cpu(), torch.cat([case["uncond_attention_mask"], case["cond_attention_mask"]]))
    assert rel_err(trace["t5_hidden"][:1], case["t5_hidden_uncond"]) <= TOL
    assert rel_err(trace["t5_hidden"][1:], case["t5_hidden_cond"]) <= TOL
    assert rel_err(trace["pooled_mean"], case["pooled_mean"]) <= TOL
    assert rel_err(trace["pooled_projection"], case["pooled_projection"]) <= TOL
    assert rel_err(trace["duration_token"], case["duration_token"]) <= TOL
    assert rel_err(trace["encoder_hidden_states"], case["encoder_hidden_states"]) <= TOL


def test_every_step(case_run):
    case, trace, _ = case_run
    steps = trace["steps"]
    assert len(steps) == 4
    for i, step in enumerate(steps):
        assert rel_err(step["velocity_batch"], case["velocity_cfg_batch"][i]) <= TOL, i
        assert rel_err(step["velocity"], case["velocity_guided"][i]) <= TOL, i
        assert rel_err(step["latents"], case["latents_after_step"][i]) <= TOL, i
    assert torch.equal(steps[0]["transformer_input"], case["step0_transformer_input"])
    assert rel_err(trace["final_latents"], case["final_latents"]) <= TOL


def test_step0_velocity_from_golden_input(case_run, tiny_synth):
    """Feeding the golden step-0 input and context to the transformer gives the golden velocities."""
    case, _, _ = case_run
    dev = tiny_synth.device
    img_ids, txt_ids = sampler.position_ids(645, case["encoder_hidden_states"].shape[1], dev)
    with torch.no_grad():
        out = tiny_synth.transformer(
            hidden_states=case["step0_transformer_input"].to(dev),
            encoder_hidden_states=case["encoder_hidden_states"].to(dev),
            pooled_projections=case["pooled_projection"].to(dev), timestep=case["transformer_timesteps"][:1].to(dev),
            img_ids=img_ids, txt_ids=txt_ids, return_dict=False,
        )[0]
    assert rel_err(out, case["step0_velocity_cfg_batch"]) <= TOL
    assert torch.equal(img_ids.cpu(), case["img_ids"][0].float())


def test_waveform_10s(case_run):
    case, _, wave = case_run
    assert wave.shape == (1, 2, 441000) and wave.dtype == torch.float32
    assert rel_err(wave[0], case["waveform_10s"]) <= TOL


def test_vae_alone_decodes_the_full_golden_waveform(golden, tiny_synth):
    case = golden["cases"][1]
    with torch.no_grad():
        wave = tiny_synth.vae.decode(case["vae_decode_input"].to(tiny_synth.device)).sample[0]
    assert wave.shape == (2, 645 * 2048)
    assert rel_err(wave, case["waveform"]) <= TOL


def test_full_decode_path_matches(golden, tiny_synth):
    """``full_decode=True`` (the official decode of all 645 frames) also gives the golden 10 s."""
    case = golden["cases"][0]
    wave = sampler.decode(tiny_synth.vae, case["final_latents"], 10.0, margin=None)
    assert rel_err(wave[0], case["waveform_10s"]) <= TOL
