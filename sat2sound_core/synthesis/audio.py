"""Synthesised audio as data, and how it is written: WAV (soundfile) plus a JSON sidecar, atomically.

Writing goes through :func:`sat2sound_core.common.files.write_with_sidecar`, the one WAV + sidecar writer
(the caption exports of :mod:`sat2sound_core.export` use it too).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.files import sidecar_path, write_with_sidecar


@dataclass
class Audio:
    """A stereo clip: ``samples`` float32 ``(channels, N)`` at ``sample_rate`` Hz, plus what made it.

    ``metadata`` records the caption, duration, steps, guidance, seed, weights identity and mode so a
    saved file can be traced back to its request (it becomes the JSON sidecar).
    """

    samples: np.ndarray
    sample_rate: int = 44100
    metadata: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim == 0:
            raise InputError("audio samples must be (channels, N) or (N,), got a single number")
        if samples.ndim == 1:
            samples = samples[None, :]
        if samples.ndim != 2:
            raise InputError(f"audio samples must be (channels, N), got shape {samples.shape}")
        if samples.shape[1] == 0:
            raise InputError("the audio has no samples")
        if isinstance(self.sample_rate, bool) or not 0 < int(self.sample_rate) <= 1_000_000:
            raise InputError(f"sample_rate must be a positive rate in Hz, got {self.sample_rate!r}")
        self.samples = samples

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return int(self.samples.shape[1]) / self.sample_rate

    @property
    def peak(self) -> float:
        return float(np.abs(self.samples).max()) if self.samples.size else 0.0

    def to_wav_bytes(self, subtype: str = "FLOAT", normalize: bool = False) -> bytes:
        """The clip as WAV bytes. ``subtype="FLOAT"`` keeps the samples exactly; for ``"PCM_16"`` the clip is
        peak-normalised (when ``normalize`` or when it would clip) so nothing wraps around."""
        import soundfile as sf

        data = self.samples
        if not np.isfinite(data).all():
            raise InputError("the audio has NaN or infinite samples (a failed synthesis); it is not written")
        if normalize or (subtype.startswith("PCM") and self.peak > 1.0):
            data = data / max(self.peak, 1e-9) * 0.98
        buf = io.BytesIO()
        try:
            sf.write(buf, data.T, int(self.sample_rate), format="WAV", subtype=subtype)
        except (sf.LibsndfileError, ValueError, TypeError) as exc:
            raise InputError(f"cannot write {self.samples.shape} audio as WAV {subtype} ({exc})") from None
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str], subtype: str = "FLOAT") -> Path:
        """Write ``path`` (WAV) and its JSON sidecar (``.json`` next to it), each atomically; returns the WAV path."""
        meta = {"sample_rate": self.sample_rate, "channels": int(self.samples.shape[0]),
                "frames": int(self.samples.shape[1]), "subtype": subtype, **self.metadata}
        wav, _ = write_with_sidecar(path, self.to_wav_bytes(subtype=subtype), meta)
        return wav

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Audio:
        """Read a WAV written by :meth:`save` (sidecar metadata included when present)."""
        import soundfile as sf

        wav = Path(path)
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        meta: dict[str, object] = {}
        side = sidecar_path(wav)
        if side.is_file():
            meta = json.loads(side.read_text())
            for key in ("sample_rate", "channels", "frames", "subtype"):
                meta.pop(key, None)
        return cls(np.ascontiguousarray(data.T), int(rate), meta)
