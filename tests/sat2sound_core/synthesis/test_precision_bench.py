"""The bf16-vs-fp32 measures of ``bench/bench_precision.py`` (SNR, per-band log-mel distance)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_precision import GROUPS, band_edges_hz, compare


def test_compare_measures_snr_and_per_band_distance() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 44100)).astype(np.float32)
    same = compare(ref, ref.copy())
    assert same["snr_db"] >= 290 and same["rel_peak_err"] == 0.0 and same["log_mel_db_mean"] == 0.0
    noisy = compare(ref, ref + 0.1 * rng.standard_normal(ref.shape).astype(np.float32))
    assert noisy["snr_db"] == pytest.approx(20.0, abs=0.2)  # noise at a tenth of the amplitude
    bands = noisy["log_mel_db_per_band"]
    assert isinstance(bands, list) and len(bands) == GROUPS and all(0 < b < 1 for b in bands)
    louder = compare(ref, 2 * ref)  # +6.02 dB everywhere
    assert louder["log_mel_db_per_band"] == pytest.approx([6.021] * GROUPS, abs=1e-2)


def test_band_edges_cover_the_spectrum_in_order() -> None:
    edges = band_edges_hz()
    assert len(edges) == GROUPS and edges[0][0] == 0.0 and edges[-1][1] == pytest.approx(22050.0)
    assert all(lo < hi for lo, hi in edges) and all(a[0] < b[0] for a, b in zip(edges, edges[1:], strict=False))
