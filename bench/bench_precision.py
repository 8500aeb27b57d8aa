"""What bf16 changes in TangoFlux's output, on the tiny reference model (quick: ~10 s on a small CPU).

Loads ``reference/tangoflux/tiny`` twice (fp32 and bf16 transformer; T5, heads and VAE stay fp32 in
both), synthesises the same captions with the same seeds (10 s, 4 steps, guidance 4.5) and reports per
clip the waveform SNR of bf16 against fp32, the relative peak error, and the log-mel distance (mean
|Δ| in dB) per band of a 64-band Slaney mel spectrogram of the mono mix (n_fft 2048, hop 512, 44.1 kHz),
grouped into 8 bands of 8 mels. It also prints this machine's measured bf16/fp32 GEMM ratio and the
precision ``auto`` picks for synthesis and for the towers.

Usage: ``python -m bench precision [--reference DIR] [--steps N] [--duration S]``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

CAPTIONS = ("birds chirping near a river", "heavy traffic with car horns")
SAMPLE_RATE = 44100
N_FFT, HOP, N_MELS, GROUPS = 2048, 512, 64, 8


def log_mel_db(wave: np.ndarray) -> torch.Tensor:
    """(frames, 64) log-mel in dB of a (channels, N) clip's mono mix."""
    from sat2sound_core.preprocess.audio import mel_filterbank

    mono = torch.from_numpy(wave.mean(axis=0).astype(np.float64))
    spec = torch.stft(mono, N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=torch.float64), return_complex=True)
    fb = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2).double()
    mel = spec.abs().pow(2).T @ fb
    return 10.0 * torch.log10(mel.clamp_min(1e-10))


def band_edges_hz() -> list[tuple[float, float]]:
    from sat2sound_core.preprocess.audio import _hz_to_mel, _mel_to_hz

    pts = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(SAMPLE_RATE / 2))), N_MELS + 2))
    per = N_MELS // GROUPS
    return [(float(pts[g * per]), float(pts[(g + 1) * per + 1])) for g in range(GROUPS)]


def compare(ref: np.ndarray, test: np.ndarray) -> dict[str, object]:
    """SNR (dB), relative peak error and per-band log-mel distance of ``test`` against ``ref``."""
    noise = float(((test - ref) ** 2).sum())
    snr = 10.0 * math.log10(float((ref**2).sum()) / max(noise, 1e-30))
    rel = float(np.abs(test - ref).max() / max(np.abs(ref).max(), 1e-12))
    diff = (log_mel_db(test) - log_mel_db(ref)).abs()
    per = N_MELS // GROUPS
    bands = [float(diff[:, g * per:(g + 1) * per].mean()) for g in range(GROUPS)]
    return {"snr_db": round(snr, 2), "rel_peak_err": rel, "log_mel_db_per_band": [round(b, 3) for b in bands],
            "log_mel_db_mean": round(float(diff.mean()), 3)}


def main(argv: list[str]) -> dict[str, object]:
    from sat2sound_core.common import devices
    from sat2sound_core.synthesis import load_synthesizer
    from sat2sound_core.synthesis.synthesizer import transformer_dtype

    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(prog="bench precision")
    parser.add_argument("--reference", type=Path, default=here.parent / "shared" / "reference" / "tangoflux" / "tiny")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not args.reference.is_dir():
        args.reference = Path("/work/shared/reference/tangoflux/tiny")

    cpu = torch.device("cpu")
    speed = devices.cpu_bf16_speed()
    auto_synth = "bf16" if transformer_dtype("auto", cpu) == torch.bfloat16 else "fp32"
    print(f"CPU bf16/fp32 GEMM: {speed.ratio:.2f}x (fp32 {speed.fp32_gflops:.0f}, bf16 {speed.bf16_gflops:.0f} "
          f"GFLOP/s; AMX-BF16 {speed.amx_bf16}, AVX512-BF16 {speed.avx512_bf16}); auto: synthesis {auto_synth}, "
          f"towers {devices.resolve_precision('auto', cpu)}")
    fp32 = load_synthesizer(args.reference, precision="fp32", cache=False)
    bf16 = load_synthesizer(args.reference, precision="bf16", cache=False)
    edges = band_edges_hz()
    print("band Hz: " + "  ".join(f"{lo:.0f}-{hi:.0f}" for lo, hi in edges))
    clips = []
    for seed, caption in enumerate(CAPTIONS):
        kw = {"duration": args.duration, "steps": args.steps, "seed": seed, "use_cache": False}
        ref = fp32.synthesize(caption, **kw).samples
        test = bf16.synthesize(caption, **kw).samples
        row = {"caption": caption, "seed": seed, **compare(ref, test)}
        clips.append(row)
        print(f"{caption!r} seed {seed}: SNR {row['snr_db']} dB, rel. peak err {row['rel_peak_err']:.2e}, "
              f"log-mel |Δ| dB per band {row['log_mel_db_per_band']} (mean {row['log_mel_db_mean']})")
    return {"gemm": speed.__dict__, "auto_synthesis": auto_synth, "steps": args.steps, "duration": args.duration,
            "bands_hz": edges, "clips": clips}
