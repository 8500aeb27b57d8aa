"""Embedding gallery rows with a model: captions through the text path, recordings through the audio path.

:func:`build_gallery <sat2sound_core.gallery.build.build_gallery>` embeds a new gallery's rows with
:func:`encode_texts` and :func:`encode_mels`. Embeddings belong to one checkpoint, so a gallery served
to another checkpoint is re-embedded once (:func:`for_checkpoint`): its captions and raw audio go
through that checkpoint's model and the matrices are cached as ``.npy`` files under
``SAT2SOUND_HOME/galleries/<file fingerprint>/<checkpoint>/``, then memory-mapped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sat2sound_core.common.files import atomic_path
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.gallery.read import Gallery
from sat2sound_core.gallery.schema import DIM

if TYPE_CHECKING:
    import torch

    from sat2sound_core.model.sat2sound import Sat2Sound

log = logging.getLogger(__name__)


def model_dim(model: Sat2Sound) -> int:
    """Width of ``model``'s embeddings (the codebook dimension; 1024 for the released checkpoints)."""
    return int(getattr(getattr(model, "config", None), "codebook_dim", DIM))


def encode_texts(model: Sat2Sound, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """(N, D) float32 text-path embeddings of ``texts`` with ``model.encode_text``, batched."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = model.encode_text(list(texts[start : start + batch_size]))
            rows.append(enc.embedding.float().cpu().numpy())
    return np.concatenate(rows, axis=0).astype(np.float32) if rows else np.zeros((0, model_dim(model)), np.float32)


def encode_mels(model: Sat2Sound, mels: Sequence[torch.Tensor | np.ndarray]) -> np.ndarray:
    """(N, D) float32 audio-path embeddings of a list of (1001, 64) log-mels."""
    import torch

    with torch.inference_mode():
        batch = torch.stack([torch.as_tensor(m, dtype=torch.float32) for m in mels])
        enc = model.encode_audio(batch)
        return np.asarray(enc.embedding.float().cpu().numpy(), dtype=np.float32)


def mel(samples: np.ndarray, rate: int) -> torch.Tensor:
    """The model's (1001, 64) log-mel of a recording's first 10 s (:func:`sat2sound_core.log_mel`)."""
    from sat2sound_core.preprocess.audio import log_mel

    return log_mel(samples, rate)


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:120]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.save would add ".npy" to a name
        np.save(fh, np.ascontiguousarray(array, dtype=np.float32))


def _audio_embeddings(gallery: Gallery, model: Sat2Sound, batch_size: int) -> np.ndarray:
    """(N, D) audio-path embeddings of the gallery's raw recordings; rows without audio stay zero."""
    out = np.zeros((gallery.rows, model_dim(model)), dtype=np.float32)
    if "audio_raw" not in gallery.h5:
        log.warning("gallery %s has no raw audio; audio embeddings for this checkpoint are empty", gallery.path)
        return out
    rows: list[int] = []
    mels: list[torch.Tensor] = []
    for r in range(gallery.rows):
        clip = gallery.audio(r)  # no scale: the raw recording
        if clip is None:
            continue
        rows.append(r)
        mels.append(mel(*clip))
        if len(rows) == batch_size:
            out[rows] = encode_mels(model, mels)
            rows, mels = [], []
    if rows:
        out[rows] = encode_mels(model, mels)
    return out


def for_checkpoint(
    gallery: Gallery,
    model: Sat2Sound,
    checkpoint: str,
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    batch_size: int = 32,
) -> Gallery:
    """``gallery`` with embeddings from ``model`` (named ``checkpoint``); see :meth:`Gallery.for_checkpoint`."""
    if checkpoint == gallery.checkpoint:
        return gallery
    if cache_dir is None:
        from sat2sound_core.common.settings import get_settings

        cache_dir = get_settings().cache_dir("galleries")
    folder = Path(cache_dir) / gallery.fingerprint() / _safe_name(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"text_embedding_zl{s}" for s in gallery.scales]
    if "audio_embedding" in gallery.h5:
        names.append("audio_embedding")
    matrices: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        target = folder / f"{name}.npy"
        if not target.is_file():
            report(progress, i, len(names), f"embedding {name} with {checkpoint}")
            if name == "audio_embedding":
                mat = _audio_embeddings(gallery, model, batch_size)
            else:
                scale = int(name.rsplit("zl", 1)[1])
                mat = encode_texts(model, gallery.strings(f"llava_caption_zl{scale}"), batch_size)
            _save_npy(target, mat)
        matrices[name] = np.load(target, mmap_mode="r")
    report(progress, len(names), len(names), "gallery embeddings ready")
    return Gallery(gallery.path, checkpoint=checkpoint, embeddings=matrices)
