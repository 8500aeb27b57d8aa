"""Audio: decoding, the windowed-sinc resampler, the log-mel, long-recording windows, bad input."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sat2sound_core import load_audio, log_mel
from sat2sound_core.common.errors import InputError
from sat2sound_core.preprocess.audio import (
    N_FRAMES,
    SEGMENT_SAMPLES,
    log_mel_windows,
    mel_filterbank,
    resample,
)
from tests.conftest import reference_file

MEL_TOL_DB = 1e-3  # MODEL.md §13


@pytest.fixture(scope="module")
def golden_shared(sat2sound_reference: Path) -> dict:
    return torch.load(reference_file(sat2sound_reference, "golden_shared.pt"), weights_only=False)


# ----------------------------------------------------------------------------- golden stages
def test_resampler_matches_the_official_44k_to_32k_output_exactly(golden_shared: dict) -> None:
    mono = golden_shared["waveform_mono_44100"]
    got = resample(mono, 44100, 32000)
    assert got.shape == golden_shared["waveform_mono_32000"].shape
    assert torch.equal(got, golden_shared["waveform_mono_32000"])


def test_stereo_is_averaged_to_mono(golden_shared: dict) -> None:
    stereo = golden_shared["waveform_stereo_44100"]
    assert torch.equal(log_mel(stereo, 44100), log_mel(golden_shared["waveform_mono_44100"][0], 44100))


def test_mel_from_start_matches_golden(golden_shared: dict) -> None:
    got = log_mel(golden_shared["waveform_stereo_44100"], 44100)
    want = golden_shared["mel_start0"][0]
    assert got.shape == (1001, 64) and got.dtype == torch.float32
    assert (got - want).abs().max() < MEL_TOL_DB


def test_mel_at_the_saved_random_start_matches_golden(golden_shared: dict) -> None:
    start = int(golden_shared["mel_seeded_start_sample_32k"])
    assert start > 0
    got = log_mel(golden_shared["waveform_stereo_44100"].numpy(), 44100, start_seconds=start / 32000)
    assert (got - golden_shared["mel_seeded"][0]).abs().max() < MEL_TOL_DB
    # the start matters: the segment from 0 is far from the seeded one
    assert (log_mel(golden_shared["waveform_stereo_44100"], 44100) - golden_shared["mel_seeded"][0]).abs().max() > 1


def test_short_clip_is_zero_padded_on_the_right(golden_shared: dict) -> None:
    three_s = golden_shared["waveform_mono_32000"][0, : 3 * 32000]
    got = log_mel(three_s, 32000)
    assert (got - golden_shared["mel_short3s_zero_padded"][0]).abs().max() < MEL_TOL_DB
    assert torch.all(got[-50:] == -100.0)  # silence after the clip: 10*log10(1e-10)


# ----------------------------------------------------------------------------- math
def test_filterbank_has_slaney_area_normalised_triangles() -> None:
    fb = mel_filterbank().double()
    assert fb.shape == (513, 64) and fb.dtype == torch.float64
    freqs = torch.linspace(0, 16000, 513, dtype=torch.float64)
    # each triangle, integrated over Hz, has area 1 (2 / bandwidth normalisation)
    areas = torch.trapezoid(fb, freqs, dim=0)
    # (narrow low filters span few FFT bins, so their sampled area is rougher)
    assert torch.allclose(areas, torch.ones(64, dtype=torch.float64), atol=0.06)
    assert torch.allclose(areas[32:], torch.ones(32, dtype=torch.float64), atol=0.005)
    assert (fb[freqs < 50] == 0).all() and (fb[freqs > 14000] == 0).all()
    peaks = fb.argmax(dim=0)
    assert (peaks.diff() >= 0).all()


def test_resample_length_and_passband() -> None:
    sr = 48000
    t = torch.arange(sr, dtype=torch.float64) / sr
    tone = torch.sin(2 * math.pi * 1000 * t).float()
    out = resample(tone, sr, 32000)
    assert out.shape == (32000,)
    ref = torch.sin(2 * math.pi * 1000 * torch.arange(32000, dtype=torch.float64) / 32000).float()
    assert (out[200:-200] - ref[200:-200]).abs().max() < 1e-3
    # above the new Nyquist (16 kHz) a tone is removed
    alias = resample(torch.sin(2 * math.pi * 20000 * t).float(), sr, 32000)
    assert alias[200:-200].abs().max() < 0.02
    assert torch.equal(resample(tone, sr, sr), tone)


def test_windows_cover_a_long_recording_and_match_single_segments() -> None:
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(32000 * 25)).astype(np.float32)
    win = log_mel_windows(wav, 32000)
    assert win.mels.shape == (3, N_FRAMES, 64)
    assert win.starts_seconds == (0.0, 10.0, 15.0)  # the last window is aligned to the end
    for mel, start in zip(win.mels, win.starts_seconds, strict=True):
        assert torch.equal(mel, log_mel(wav, 32000, start_seconds=start))
    capped = log_mel_windows(wav, 32000, hop_seconds=1.0, max_windows=4)
    assert len(capped.starts_seconds) == 4 and capped.starts_seconds[0] == 0.0 and capped.starts_seconds[-1] == 15.0
    short = log_mel_windows(wav[:32000], 32000)
    assert short.mels.shape[0] == 1 and torch.equal(short.mels[0], log_mel(wav[:32000], 32000))


# ----------------------------------------------------------------------------- decoding
def _tone(sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


@pytest.mark.parametrize(("fmt", "ext", "tol"), [("WAV", "wav", 1e-4), ("FLAC", "flac", 1e-4), ("OGG", "ogg", 0.05), ("MP3", "mp3", 0.1)])
def test_load_audio_decodes_supported_formats(tmp_path: Path, fmt: str, ext: str, tol: float) -> None:
    data = _tone(22050, 1.0, channels=2)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, data, 22050, format=fmt)
    wav, sr = load_audio(path)
    assert sr == 22050 and wav.dtype == torch.float32 and wav.shape[0] == 2
    n = min(wav.shape[1], data.shape[0])
    assert wav.shape[1] >= 0.9 * data.shape[0]
    if fmt in ("WAV", "FLAC"):
        assert np.abs(wav.numpy()[:, :n] - data.T[:, :n]).max() < tol
    else:  # lossy: compare loudness, not samples (codec delay)
        assert abs(float(wav.abs().max()) - float(np.abs(data).max())) < tol
    # bytes and file objects decode the same
    raw = path.read_bytes()
    assert torch.equal(load_audio(raw)[0], wav)
    assert torch.equal(load_audio(io.BytesIO(raw))[0], wav)
    mel = log_mel(wav, sr)
    assert mel.shape == (1001, 64) and torch.isfinite(mel).all()


def test_load_audio_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_audio(empty)
    with pytest.raises(InputError, match="empty"):
        load_audio(b"")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(InputError, match="corrupt or not in a supported format"):
        load_audio(junk)
    with pytest.raises(InputError, match="ffmpeg"):
        load_audio(b"\x00\x00\x00\x18ftypM4A " + bytes(200))  # an m4a header: unsupported
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(InputError, match="silent"):
        load_audio(silent)
    no_samples = tmp_path / "none.wav"
    sf.write(no_samples, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(InputError, match="no samples|empty|corrupt"):
        load_audio(no_samples)


@pytest.mark.parametrize(
    ("waveform", "sr", "start", "message"),
    [
        (np.zeros(1000, np.int16), 32000, 0.0, "divide by 32768"),
        (torch.zeros(1000, dtype=torch.int32), 32000, 0.0, "divide by 32768"),
        (np.full(1000, 1000.0, np.float32), 32000, 0.0, "outside"),
        (np.array([0.0, np.nan] * 10, np.float32), 32000, 0.0, "NaN"),
        (np.zeros(0, np.float32), 32000, 0.0, "empty"),
        (np.zeros((2, 3, 4), np.float32), 32000, 0.0, "shape"),
        (np.zeros((1000, 2), np.float32), 32000, 0.0, "transpose"),
        (np.zeros(1000, np.float32), 0, 0.0, "sample_rate"),
        (np.zeros(1000, np.float32), 32000.0, 0.0, "sample_rate"),
        (np.zeros(1000, np.float32), 32000, -1.0, "start_seconds"),
        (np.zeros(32000, np.float32), 32000, 5.0, "past the end"),
        ([0.0, 0.1], 32000, 0.0, "numpy array or torch tensor"),
    ],
)
def test_log_mel_refuses_bad_waveforms(waveform: object, sr: object, start: float, message: str) -> None:
    with pytest.raises(InputError, match=message):
        log_mel(waveform, sr, start_seconds=start)  # type: ignore[arg-type]


def test_segment_is_exactly_ten_seconds_at_32k() -> None:
    assert SEGMENT_SAMPLES == 320000 and N_FRAMES == 1001


def test_odd_sample_rates_do_not_build_a_gigantic_kernel(caplog: pytest.LogCaptureFixture) -> None:
    sr = 44101  # gcd with 32000 is 1: the polyphase kernel would have ~1.4e9 taps
    t = torch.arange(sr * 2, dtype=torch.float64) / sr
    tone = torch.sin(2 * math.pi * 1000 * t).float()
    out = resample(tone, sr, 32000)
    assert out.shape == (math.ceil(32000 * tone.shape[0] / sr),)
    ref = torch.sin(2 * math.pi * 1000 * torch.arange(out.shape[0], dtype=torch.float64) / 32000).float()
    assert (out[500:-500] - ref[500:-500]).abs().max() < 1e-3
    assert "soxr" in caplog.text
    assert log_mel(tone.numpy(), sr).shape == (1001, 64)


# ----------------------------------------------------------------------------- reading window by window
def test_a_file_read_window_by_window_matches_the_golden_mels(golden_shared: dict, tmp_path: Path) -> None:
    """The official stereo 44.1 kHz waveform as a float WAV: open_audio's windowed read (seeks, per-block
    mix-down, per-window resampling) gives the official log-mels, at the start and at the seeded start."""
    from sat2sound_core.preprocess.audio import open_audio

    stereo = golden_shared["waveform_stereo_44100"].numpy()
    path = tmp_path / "golden.wav"
    sf.write(path, stereo.T, 44100, subtype="FLOAT")
    audio = open_audio(path)
    assert (audio.sample_rate, audio.channels, audio.frames) == (44100, 2, stereo.shape[1])
    assert (log_mel(audio, 44100) - golden_shared["mel_start0"][0]).abs().max() < MEL_TOL_DB
    start = int(golden_shared["mel_seeded_start_sample_32k"]) / 32000
    assert (log_mel(audio, 44100, start_seconds=start) - golden_shared["mel_seeded"][0]).abs().max() < MEL_TOL_DB
    assert torch.equal(log_mel(audio, 44100, start), log_mel(stereo, 44100, start))


@pytest.mark.parametrize(("rate", "channels", "seconds", "fmt"), [
    (44100, 2, 25.3, "FLAC"), (48000, 1, 13.0, "WAV"), (16000, 3, 4.0, "WAV"), (32000, 1, 31.0, "FLAC"),
    (22050, 2, 12.0, "OGG"), (8000, 1, 0.7, "WAV"),
])
def test_windowed_reading_is_identical_to_decoding_whole(rate: int, channels: int, seconds: float, fmt: str) -> None:
    from sat2sound_core.preprocess.audio import open_audio

    rng = np.random.default_rng(rate)
    buf = io.BytesIO()
    sf.write(buf, (0.15 * rng.standard_normal((int(rate * seconds), channels))).astype(np.float32), rate, format=fmt)
    data = buf.getvalue()
    whole, sr = load_audio(data)
    audio = open_audio(data)
    for start in sorted({0.0, min(1.2345, seconds / 2), max(0.0, seconds - 3)}):
        assert torch.equal(log_mel(audio, sr, start), log_mel(whole, sr, start)), start
    a, b = log_mel_windows(audio, sr, max_windows=32), log_mel_windows(whole, sr, max_windows=32)
    assert a.starts_seconds == b.starts_seconds and torch.equal(a.mels, b.mels)


def test_windowed_reading_refuses_damaged_and_silent_windows(tmp_path: Path) -> None:
    from sat2sound_core.preprocess.audio import open_audio

    x = np.zeros((32000 * 3, 1), np.float32)
    x[40000] = np.nan
    sf.write(tmp_path / "nan.wav", x, 32000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN"):
        log_mel(open_audio(tmp_path / "nan.wav"), 32000)
    sf.write(tmp_path / "silent.wav", np.zeros((32000, 2), np.float32), 32000)
    with pytest.raises(InputError, match="silent"):
        log_mel(open_audio(tmp_path / "silent.wav"), 32000)
    with pytest.raises(InputError, match="past the end"):
        log_mel(open_audio(tmp_path / "silent.wav"), 32000, start_seconds=5.0)
    with pytest.raises(InputError, match="corrupt or not in a supported format"):
        open_audio(b"RIFF\x00\x00garbage")
