"""Writing a gallery file in the schema of :mod:`sat2sound_core.gallery.schema`, atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.files import atomic_path
from sat2sound_core.gallery.schema import (
    CREATED_BY,
    OFFICIAL_CHECKPOINT,
    RAW_RATE,
    SCALES,
    SCHEMA_VERSION,
    SYNTH_RATE,
)


def write_gallery(
    path: str | os.PathLike[str],
    sample_ids: Sequence[str],
    captions: Mapping[int, Sequence[str]],
    text_embeddings: Mapping[int, np.ndarray],
    audio_captions: Sequence[str] | None = None,
    audio_embeddings: np.ndarray | None = None,
    raw_audio: Sequence[np.ndarray | None] | None = None,
    raw_rate: int = RAW_RATE,
    synth_audio: Mapping[int, Sequence[np.ndarray | None]] | None = None,
    checkpoint: str = OFFICIAL_CHECKPOINT,
) -> Path:
    """Write a gallery file, atomically (:func:`sat2sound_core.common.files.atomic_path`).

    Embeddings are stored uncompressed and contiguous so readers can memory-map them; audio rows
    are variable-length float32 (mono; ``sample_rate`` attribute on the dataset). The folder must exist.
    """
    import h5py

    path = Path(path)
    n = len(sample_ids)
    for s, caps in captions.items():
        if s not in SCALES:
            raise InputError(f"scale {s} is not one of {SCALES}")
        if len(caps) != n or text_embeddings[s].shape[0] != n:
            raise InputError(f"scale {s}: captions/embeddings do not have {n} rows")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
    str_t = h5py.string_dtype("utf-8")
    # HDF5 would flock the file, which the atomic writer already holds locked until the rename
    with atomic_path(path) as tmp, h5py.File(tmp, "w", locking=False) as f:
        f.attrs["checkpoint"] = checkpoint
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["created_by"] = CREATED_BY
        f.create_dataset("sample_id", data=np.array(list(sample_ids), dtype=object), dtype=str_t)
        for s, caps in sorted(captions.items()):
            f.create_dataset(f"llava_caption_zl{s}", data=np.array(list(caps), dtype=object), dtype=str_t)
            f.create_dataset(
                f"text_embedding_zl{s}", data=np.ascontiguousarray(text_embeddings[s], dtype=np.float32)
            )
        if audio_captions is not None:
            f.create_dataset("audio_caption", data=np.array(list(audio_captions), dtype=object), dtype=str_t)
        if audio_embeddings is not None:
            f.create_dataset("audio_embedding", data=np.ascontiguousarray(audio_embeddings, dtype=np.float32))
        vlen = h5py.vlen_dtype(np.float32)
        lengths = np.zeros(n, dtype=np.int64)
        if raw_audio is not None:
            ds = f.create_dataset("audio_raw", (n,), dtype=vlen)
            ds.attrs["sample_rate"] = raw_rate
            for i, clip in enumerate(raw_audio):
                arr = np.zeros(0, np.float32) if clip is None else np.asarray(clip, np.float32).reshape(-1)
                ds[i] = arr
                lengths[i] = arr.size
        for s, clips in (synth_audio or {}).items():
            ds = f.create_dataset(f"synth_audio_zl{s}", (n,), dtype=vlen)
            ds.attrs["sample_rate"] = SYNTH_RATE
            for i, clip in enumerate(clips):
                ds[i] = np.zeros(0, np.float32) if clip is None else np.asarray(clip, np.float32).reshape(-1)
        f.create_dataset("audio_length", data=lengths)
    return path
