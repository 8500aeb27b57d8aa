"""A resumable embedding cache for one evaluation encoding pass.

One folder per (checkpoint, dataset, split, scale, metadata, mel index, precision) holds a small JSON
manifest and one ``.npy`` per (modality, chunk of rows), each written atomically through
:mod:`sat2sound_core.common.files`. A run that is interrupted keeps its finished chunks; the next run
computes only the missing ones. Chunk boundaries depend only on ``chunk_rows``, not on the batch size,
so a different ``--batch-size`` or another composed variant reuses everything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.files import atomic_path, write_text

MODALITIES = ("image", "audio", "text")
Embeddings = npt.NDArray[np.float32]


@dataclass(frozen=True)
class CacheKey:
    """What the cached embeddings depend on."""

    checkpoint: str  # a stable id of the weights (path + size + mtime, or a registry name)
    dataset: str
    split: str
    scale: int
    metadata: str
    mel_index: int
    precision: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


class EmbeddingCache:
    """Chunks of embeddings under ``root/<digest of key>/``."""

    def __init__(self, root: Path, key: CacheKey, chunk_rows: int = 1000) -> None:
        if chunk_rows < 1:
            raise InputError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.key = key
        self.chunk_rows = chunk_rows
        self.folder = Path(root) / key.digest()
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            write_text(manifest, json.dumps({"key": asdict(key), "chunk_rows": chunk_rows}, indent=1))

    def chunks(self, rows: int) -> list[tuple[int, int]]:
        """(start, stop) of every chunk covering rows 0 .. rows-1."""
        return [(lo, min(lo + self.chunk_rows, rows)) for lo in range(0, rows, self.chunk_rows)]

    def path(self, modality: str, start: int, stop: int) -> Path:
        if modality not in MODALITIES:
            raise InputError(f"unknown modality {modality!r}; use one of {MODALITIES}")
        return self.folder / f"{modality}_{start:08d}_{stop:08d}.npy"

    def has(self, modality: str, start: int, stop: int) -> bool:
        return self.path(modality, start, stop).is_file()

    def save(self, modality: str, start: int, stop: int, values: Embeddings) -> Path:
        arr = np.ascontiguousarray(values, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != stop - start:
            raise InputError(f"chunk {start}..{stop} of {modality} must be ({stop - start}, D), got {arr.shape}")
        target = self.path(modality, start, stop)
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, arr)
        return target

    def load(self, modality: str, rows: int) -> Embeddings:
        """All ``rows`` embeddings of ``modality`` (every chunk must be present)."""
        parts = []
        for lo, hi in self.chunks(rows):
            p = self.path(modality, lo, hi)
            if not p.is_file():
                raise InputError(f"embedding chunk {p.name} is missing; rerun the evaluation to compute it")
            parts.append(np.load(p))
        out: Embeddings = np.concatenate(parts).astype(np.float32, copy=False)
        return out
