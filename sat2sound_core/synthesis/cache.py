"""Disk cache of synthesised clips: ``<key>.wav`` + ``<key>.json`` under ``SAT2SOUND_HOME/synthesis``.

The key is a hash of everything that changes the samples (caption, duration, steps, guidance, seed,
weights identity, precision, latent length, decode margin), so a hit is the clip that request would
produce. Files are written atomically, so a crash never leaves a half clip that later reads as a hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from sat2sound_core.common.files import sidecar_path
from sat2sound_core.synthesis.audio import Audio

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def request_key(request: Mapping[str, object]) -> str:
    """Stable hash of a request dict (JSON with sorted keys)."""
    blob = json.dumps({"format": CACHE_FORMAT, **request}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class AudioCache:
    """WAV + JSON sidecar files in one folder, addressed by :func:`request_key`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.wav"

    def get(self, key: str) -> Audio | None:
        """The cached clip for ``key`` or None (a damaged entry is ignored and logged)."""
        wav = self.path(key)
        if not (wav.is_file() and sidecar_path(wav).is_file()):
            return None
        try:
            audio = Audio.load(wav)
        except Exception as exc:  # a damaged file is a miss, not an error
            log.warning("ignoring unreadable cached clip %s (%s)", wav, exc)
            return None
        audio.metadata["cache"] = "hit"
        return audio

    def put(self, key: str, audio: Audio) -> Path:
        """Store ``audio`` (float WAV, so a hit returns the very same samples)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return audio.save(self.path(key), subtype="FLOAT")
