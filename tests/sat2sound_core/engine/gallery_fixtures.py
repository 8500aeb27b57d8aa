"""Synthetic galleries whose right answers are known by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sat2sound_core.gallery import write_gallery


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic_gallery(path: Path, n: int = 200, dim: int = 1024, seed: int = 0, audio_every: int = 2,
                      checkpoint: str = "bingmap_withmeta") -> dict[str, np.ndarray]:
    """n rows; scale s captions are 'row {i} zl{s}'; embeddings are random unit vectors scaled by
    arbitrary norms (so retrieval must normalise); every ``audio_every``-th row has audio."""
    rng = np.random.default_rng(seed + 100)
    text = {s: random_unit(n, dim, seed + s) * rng.uniform(0.5, 5.0, size=(n, 1)).astype(np.float32)
            for s in (1, 3, 5)}
    has_audio = np.arange(n) % audio_every == 0
    audio = random_unit(n, dim, seed + 7) * has_audio[:, None]
    raw = [np.sin(np.arange(3200, dtype=np.float32) * (i + 1) / 100.0) * 0.5 if has_audio[i] else None
           for i in range(n)]
    synth = {1: [np.full(441, 0.25, np.float32) if i % 5 == 0 else None for i in range(n)]}
    write_gallery(
        path,
        sample_ids=[f"id-{i}" for i in range(n)],
        captions={s: [f"row {i} zl{s}" for i in range(n)] for s in (1, 3, 5)},
        text_embeddings=text,
        audio_captions=[f"audio of row {i}" for i in range(n)],
        audio_embeddings=audio,
        raw_audio=raw,
        synth_audio=synth,
        checkpoint=checkpoint,
    )
    return {"text1": text[1], "text3": text[3], "text5": text[5], "audio": audio, "has_audio": has_audio}
