"""``Audio``: WAV + JSON sidecar writing (atomic) and reading back with soundfile."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import soundfile as sf

from sat2sound_core.common.errors import InputError
from sat2sound_core.synthesis import Audio


def _clip(peak: float = 0.5) -> Audio:
    rng = np.random.default_rng(0)
    samples = (rng.uniform(-1, 1, size=(2, 4410)) * peak).astype(np.float32)
    return Audio(samples, 44100, {"caption": "rain on a tin roof", "seed": 3})


def test_float_wav_round_trip_is_exact(tmp_path):
    clip = _clip()
    path = clip.save(tmp_path / "out" / "clip.wav")
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 44100 and data.shape == (4410, 2)
    assert np.array_equal(data.T, clip.samples)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["caption"] == "rain on a tin roof" and meta["sample_rate"] == 44100 and meta["channels"] == 2
    back = Audio.load(path)
    assert np.array_equal(back.samples, clip.samples) and back.metadata == clip.metadata
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_pcm16_bytes_do_not_clip(tmp_path):
    loud = _clip(peak=2.4)  # the random tiny decoder reaches ±2.4
    data, rate = sf.read(io.BytesIO(loud.to_wav_bytes(subtype="PCM_16")), dtype="float32")
    assert rate == 44100
    assert np.abs(data).max() <= 1.0
    scaled = loud.samples.T / loud.peak * 0.98
    assert np.abs(data - scaled).max() < 2 / 32768
    quiet = _clip(peak=0.3)
    data, _ = sf.read(io.BytesIO(quiet.to_wav_bytes(subtype="PCM_16")), dtype="float32")
    assert np.abs(data - quiet.samples.T).max() < 1 / 32768  # unchanged when it fits


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = _clip().save(tmp_path / "clip.wav")
    before = path.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        _clip(peak=0.9).save(path)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_shapes():
    assert Audio(np.zeros(10)).samples.shape == (1, 10)
    assert Audio(np.zeros((2, 44100))).duration == 1.0
    with pytest.raises(InputError):
        Audio(np.zeros((1, 2, 3)))


def test_saved_clips_get_the_umask_mode(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        path = _clip().save(tmp_path / "clip.wav")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.with_suffix(".json").stat().st_mode) == 0o644
