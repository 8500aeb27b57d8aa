"""``Synthesizer.synthesize``: the everyday API on the tiny model (batching, cache, progress, input checks)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from sat2sound_core.common.errors import ConfigError, InputError
from sat2sound_core.common.progress import Cancelled, CancelToken
from sat2sound_core.synthesis import FAST_STEPS, LICENCE_NOTE, Audio, CaptionTruncatedWarning
from tests.sat2sound_core.synthesis.conftest import rel_err

BIRDS = "birds chirping near a river"  # 8 tokens
TRAFFIC = "heavy traffic with car horns"  # 6 tokens
CAR_RIVER = "birds near a car river"  # 6 tokens, same length as TRAFFIC


class Boom(torch.nn.Module):
    """A stand-in module that fails if the model is ever called."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, *args, **kwargs):
        raise AssertionError("the model was called")


def test_synthesize_equals_golden_end_to_end(golden, tiny_synth):
    """Caption text → tokens → seed-0/1 noise → 4 steps → 10 s: the official outputs."""
    for seed, case in zip(golden["meta"]["noise_seeds"], golden["cases"], strict=True):
        audio = tiny_synth.synthesize(case["caption"], duration=10, steps=4, guidance=4.5, seed=seed)
        assert isinstance(audio, Audio)
        assert audio.sample_rate == 44100
        assert audio.samples.dtype == np.float32 and audio.samples.shape == (2, 441000)
        assert rel_err(torch.from_numpy(audio.samples), case["waveform_10s"]) <= 1e-4


def test_batched_equals_unbatched(tiny_synth):
    captions = [BIRDS, TRAFFIC, CAR_RIVER]
    seeds = [5, 6, 7]
    batched = tiny_synth.synthesize(captions, duration=3.0, steps=2, seed=seeds)
    assert isinstance(batched, list) and len(batched) == 3
    for caption, seed, got in zip(captions, seeds, batched, strict=True):
        alone = tiny_synth.synthesize(caption, duration=3.0, steps=2, seed=seed)
        assert got.metadata["caption"] == caption and got.metadata["seed"] == seed
        assert rel_err(torch.from_numpy(got.samples), torch.from_numpy(alone.samples)) <= 1e-4


def test_padding_would_change_the_result(tiny_synth):
    """Why captions are grouped by length: padding TRAFFIC to BIRDS's length changes its audio."""
    tokens = tiny_synth.tokenize(TRAFFIC)
    padded_ids = torch.nn.functional.pad(tokens.input_ids, (0, 2))
    padded_mask = torch.nn.functional.pad(tokens.attention_mask, (0, 2))
    a = tiny_synth.synthesize_from_tokens(tokens.input_ids, tokens.attention_mask, 2.0, 2, 4.5)
    b = tiny_synth.synthesize_from_tokens(padded_ids, padded_mask, 2.0, 2, 4.5)
    assert rel_err(b, a) > 1e-3


def test_deterministic_for_a_seed(tiny_synth):
    a = tiny_synth.synthesize(TRAFFIC, duration=2.0, steps=2, seed=11)
    b = tiny_synth.synthesize(TRAFFIC, duration=2.0, steps=2, seed=11)
    c = tiny_synth.synthesize(TRAFFIC, duration=2.0, steps=2, seed=12)
    assert np.array_equal(a.samples, b.samples)
    assert not np.allclose(a.samples, c.samples)


def test_guidance_at_most_one_skips_the_unconditional_branch(tiny_synth):
    tokens = tiny_synth.tokenize(BIRDS)
    traces = []
    waves = []
    for g in (0.5, 1.0, 4.5):
        trace: dict = {}
        waves.append(tiny_synth.synthesize_from_tokens(tokens.input_ids, tokens.attention_mask, 2.0, 2, g, trace=trace))
        traces.append(trace)
    assert traces[0]["steps"][0]["velocity_batch"].shape[0] == 1  # conditional row only
    assert traces[2]["steps"][0]["velocity_batch"].shape[0] == 2  # [uncond, cond]
    assert torch.equal(waves[0], waves[1])  # both are "no guidance"
    assert rel_err(waves[2], waves[1]) > 1e-3
    # without guidance the velocity is the conditional one: same as the cond row of the guided batch at step 0
    assert rel_err(traces[1]["steps"][0]["velocity_batch"][0], traces[2]["steps"][0]["velocity_batch"][1]) <= 1e-4


def test_progress_reports_every_step(tiny_synth):
    calls = []
    tiny_synth.synthesize(BIRDS, duration=1.0, steps=3, progress=lambda d, t, m: calls.append((d, t, m)))
    dones = [c[0] for c in calls]
    assert dones == sorted(dones)
    assert calls[-1][0] == calls[-1][1] == 4  # 3 steps + decode
    assert sum("step" in c[2] for c in calls) == 3


def test_cancel_from_callback_and_token(cached_synth):
    def stop(done, total, message):
        if done >= 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        cached_synth.synthesize(BIRDS, duration=1.0, steps=3, progress=stop)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        cached_synth.synthesize(BIRDS, duration=1.0, steps=3, cancel=token)
    assert not list(cached_synth.cache.folder.glob("*.wav"))  # nothing half-made was cached


def test_cache_hit_makes_no_model_call(cached_synth):
    first = cached_synth.synthesize(TRAFFIC, duration=1.5, steps=2, seed=3)
    assert first.metadata["cache"] == "stored"
    wavs = list(cached_synth.cache.folder.glob("*.wav"))
    assert len(wavs) == 1 and wavs[0].with_suffix(".json").is_file()
    sidecar = json.loads(wavs[0].with_suffix(".json").read_text())
    assert sidecar["caption"] == TRAFFIC and sidecar["steps"] == 2 and sidecar["seed"] == 3

    broken = copy.copy(cached_synth)
    broken.transformer = Boom()
    broken.t5 = Boom()
    broken.vae = Boom()
    again = broken.synthesize(TRAFFIC, duration=1.5, steps=2, seed=3)
    assert again.metadata["cache"] == "hit"
    assert np.array_equal(again.samples, first.samples)
    for changed in ({"seed": 4}, {"steps": 3}, {"duration": 1.0}, {"guidance": 3.0}):
        args = {"duration": 1.5, "steps": 2, "seed": 3, **changed}
        with pytest.raises(AssertionError, match="model was called"):
            broken.synthesize(TRAFFIC, **args)
    with pytest.raises(AssertionError, match="model was called"):
        broken.synthesize(TRAFFIC, duration=1.5, steps=2, seed=3, use_cache=False)


def test_cache_key_includes_weights_identity(cached_synth):
    cached_synth.synthesize(TRAFFIC, duration=1.0, steps=1, seed=0)
    other = copy.copy(cached_synth)
    other.weights = type(cached_synth.weights)(cached_synth.weights.folder, "elsewhere", "local-other")
    other.transformer = Boom()
    with pytest.raises(AssertionError, match="model was called"):
        other.synthesize(TRAFFIC, duration=1.0, steps=1, seed=0)


@pytest.mark.parametrize("duration", [0, -1, 30.5, math.nan, math.inf, "ten"])
def test_bad_duration(tiny_synth, duration):
    with pytest.raises(InputError, match="duration"):
        tiny_synth.synthesize(BIRDS, duration=duration, steps=1)


@pytest.mark.parametrize("steps", [0, -3, 1.5, True])
def test_bad_steps(tiny_synth, steps):
    with pytest.raises(InputError, match="steps"):
        tiny_synth.synthesize(BIRDS, duration=1.0, steps=steps)


@pytest.mark.parametrize("caption", ["", "   ", [""]])
def test_empty_caption(tiny_synth, caption):
    with pytest.raises(InputError, match="empty"):
        tiny_synth.synthesize(caption, duration=1.0, steps=1)


def test_bad_guidance_and_seed(tiny_synth):
    with pytest.raises(InputError, match="guidance"):
        tiny_synth.synthesize(BIRDS, duration=1.0, steps=1, guidance=-1)
    with pytest.raises(InputError, match="seed"):
        tiny_synth.synthesize([BIRDS, TRAFFIC], duration=1.0, steps=1, seed=[1])
    with pytest.raises(InputError, match="no captions"):
        tiny_synth.synthesize([], duration=1.0, steps=1)


def test_long_caption_warns_and_says_what_is_dropped(tiny_synth):
    caption = " ".join(["birds"] * 60 + ["river"] * 10)  # 70 pieces + </s>
    with pytest.warns(CaptionTruncatedWarning, match="64 tokens") as record:
        tokens = tiny_synth.tokenize(caption)
    assert tokens.length == 64 and tokens.input_ids[0, -1].item() == 1
    assert tokens.truncated == " ".join(["river"] * 7)
    assert "river river" in str(record[0].message)
    with pytest.warns(CaptionTruncatedWarning):
        audio = tiny_synth.synthesize(caption, duration=0.5, steps=1)
    assert audio.metadata["truncated_caption_tail"] == tokens.truncated


def test_fast_mode_is_labelled_and_uses_fewer_steps(tiny_synth):
    totals = []

    def stop(done, total, message):
        totals.append(total)
        raise Cancelled("enough")

    with pytest.raises(Cancelled):
        tiny_synth.synthesize(BIRDS, duration=1.0, steps=50, fast=True, progress=stop)
    assert totals == [FAST_STEPS + 1]
    audio = tiny_synth.synthesize(BIRDS, duration=0.5, steps=2, fast=True)
    assert audio.metadata["mode"].startswith("fast") and audio.metadata["steps"] == 2
    assert tiny_synth.synthesize(BIRDS, duration=0.5, steps=2).metadata["mode"] == "faithful"


def test_shorter_latent_changes_the_audio(tiny_synth):
    """Measured: running the flow on a 12-s latent instead of 30 s changes the first seconds (Flux
    attends over all frames), so it is opt-in and never the default."""
    full = tiny_synth.synthesize(BIRDS, duration=10.0, steps=2)
    short = tiny_synth.synthesize(BIRDS, duration=10.0, steps=2, latent_seconds=12.0)
    assert short.metadata["latent_seconds"] < 12.1 and full.metadata["latent_seconds"] > 29.9
    assert rel_err(torch.from_numpy(short.samples), torch.from_numpy(full.samples)) > 1e-3
    with pytest.raises(InputError, match="shorter than the duration"):
        tiny_synth.synthesize(BIRDS, duration=10.0, steps=1, latent_seconds=5.0)


def test_licence_note_is_exposed(tiny_synth):
    assert "non-commercial" in LICENCE_NOTE and "Stability AI" in LICENCE_NOTE
    assert tiny_synth.licence_note == LICENCE_NOTE


def test_bf16_is_approximate_and_auto_only_where_3x_faster(golden, tiny_dir, monkeypatch):
    from sat2sound_core.common import devices
    from sat2sound_core.common.devices import resolve_device
    from sat2sound_core.synthesis import load_synthesizer
    from sat2sound_core.synthesis.synthesizer import transformer_dtype

    monkeypatch.setattr(devices, "bf16_speedup", lambda device: 2.0)  # this AVX512-BF16 EPYC
    assert transformer_dtype("auto", torch.device("cpu")) == torch.float32
    assert transformer_dtype("auto", torch.device("cuda")) == torch.float32
    monkeypatch.setattr(devices, "bf16_speedup", lambda device: 5.75)  # an AMX Sapphire Rapids
    assert transformer_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="precision"):
        transformer_dtype("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu please")
    synth = load_synthesizer(tiny_dir, precision="bf16", cache=False)
    assert synth.precision == "bf16" and next(synth.transformer.parameters()).dtype == torch.bfloat16
    case = golden["cases"][0]
    trace: dict = {}
    wave = synth.synthesize_from_tokens(case["cond_input_ids"], case["cond_attention_mask"], 10, 4, 4.5,
                                        case["init_noise"], trace=trace)
    step0 = rel_err(trace["steps"][0]["velocity_batch"], case["step0_velocity_cfg_batch"])
    assert 1e-4 < step0 < 3e-2  # coarse agreement only (measured 8e-3)
    assert wave.dtype == torch.float32 and wave.shape == (1, 2, 441000)


def test_sidecar_records_precision_and_steps(tiny_synth, tmp_path):
    audio = tiny_synth.synthesize(BIRDS, duration=1.0, steps=2, seed=3, latent_seconds=1.0)
    meta = json.loads(audio.save(tmp_path / "clip.wav").with_suffix(".json").read_text())
    assert meta["precision"] == "fp32" and meta["steps"] == 2 and meta["mode"] == "faithful"
    fast = tiny_synth.synthesize(BIRDS, duration=1.0, steps=40, seed=3, latent_seconds=1.0, fast=True)
    meta = json.loads(fast.save(tmp_path / "fast.wav").with_suffix(".json").read_text())
    assert meta["steps"] == FAST_STEPS and meta["precision"] == "fp32" and meta["mode"].startswith("fast")
    assert Audio.load(tmp_path / "fast.wav").metadata["precision"] == "fp32"
