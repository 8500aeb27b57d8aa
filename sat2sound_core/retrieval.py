"""Retrieval: top-k gallery rows for an image, audio, text or composed query.

All similarities are cosines (both sides L2-normalised), as the official demo and evaluation use.
``target="text"`` searches the per-scale LLaVA caption embeddings (``text_embedding_zl{s}``: image →
caption, the demo's retrieval); ``target="audio"`` searches the recordings' audio embeddings (image →
audio). :func:`rank_embeddings` ranks any list of embeddings, e.g. clicked places for an audio query
(audio → image). A composed query (a recording plus a caption) is ``l2n(l2n(a) + l2n(c))``: the sum
of the two normalised embeddings, normalised again (:func:`compose`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from numpy.typing import ArrayLike

from sat2sound_core.common.errors import InputError
from sat2sound_core.gallery import Gallery

if TYPE_CHECKING:
    import torch

#: an embedding or a stack of them: a torch tensor (any device, any float dtype) or anything numpy reads
Embedding: TypeAlias = "torch.Tensor | ArrayLike"

TARGETS = ("text", "audio")


@dataclass(frozen=True)
class Hit:
    """One retrieved gallery row: 1-based rank, cosine score, its caption, row index, whether playable
    audio exists for it, and the scale (and target column) it was retrieved at."""

    rank: int
    score: float
    caption: str
    row: int
    has_audio: bool
    scale: int
    target: str = "text"
    sample_id: str = ""
    audio_caption: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "score": self.score,
            "caption": self.caption,
            "row": self.row,
            "has_audio": self.has_audio,
            "scale": self.scale,
            "target": self.target,
            "sample_id": self.sample_id,
            "audio_caption": self.audio_caption,
        }


def _as_array(x: Embedding) -> np.ndarray:
    """``x`` as a float32 array; a tensor is copied to the CPU first (torch is loaded only when one exists)."""
    if hasattr(x, "float") and hasattr(x, "cpu"):
        import torch

        if isinstance(x, torch.Tensor):
            return np.asarray(x.float().cpu().numpy(), dtype=np.float32)
    return np.asarray(x, dtype=np.float32)


def l2n(x: Embedding) -> np.ndarray:
    """L2-normalise the last axis (float32); a zero vector raises :class:`InputError`."""
    arr = _as_array(x)
    norm = np.linalg.norm(arr, axis=-1, keepdims=True)
    if np.any(norm == 0) or not np.all(np.isfinite(norm)):
        raise InputError("cannot normalise a zero or non-finite embedding")
    out: np.ndarray = arr / norm
    return out


def compose(audio_embedding: Embedding, caption_embedding: Embedding) -> np.ndarray:
    """The composed audio+caption query ``l2n(l2n(a) + l2n(c))`` (the retrieval form of composition)."""
    return l2n(l2n(audio_embedding) + l2n(caption_embedding))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest finite scores, largest first (ties: lower index first)."""
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    scores = np.asarray(scores)
    finite = np.isfinite(scores)
    k = min(k, int(finite.sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    work = np.where(finite, scores, -np.inf)
    idx = np.argpartition(-work, k - 1)[:k] if k < work.size else np.arange(work.size)
    order = np.lexsort((idx, -work[idx]))
    idx = idx[order][:k]
    return idx.astype(np.int64), work[idx].astype(np.float32)


def retrieve(
    gallery: Gallery, query: Embedding, k: int = 10, scale: int = 1, target: str = "text"
) -> list[Hit]:
    """Top-k rows of ``gallery`` for a query embedding (any modality; normalised here).

    ``target="text"`` ranks ``text_embedding_zl{scale}`` and returns the LLaVA captions at that scale;
    ``target="audio"`` ranks ``audio_embedding`` (rows without audio are skipped) and returns the
    audio captions.
    """
    if target not in TARGETS:
        raise InputError(f"unknown retrieval target {target!r}; use one of {', '.join(TARGETS)}")
    if target == "text":
        if scale not in gallery.scales:
            raise InputError(f"gallery {gallery.path.name} has no captions for scale {scale} (has {gallery.scales})")
        name = f"text_embedding_zl{scale}"
    else:
        name = "audio_embedding"
    q = l2n(query).reshape(-1)
    idx, vals = top_k(gallery.scores(name, q), k)
    hits = []
    for rank, (row, score) in enumerate(zip(idx.tolist(), vals.tolist(), strict=True), start=1):
        audio_caption = gallery.audio_caption(row)
        caption = gallery.caption(row, scale) if target == "text" else audio_caption
        hits.append(
            Hit(
                rank=rank,
                score=float(score),
                caption=caption,
                row=int(row),
                has_audio=gallery.has_audio(row, scale),
                scale=scale,
                target=target,
                sample_id=gallery.sample_id(row),
                audio_caption=audio_caption,
            )
        )
    return hits


def rank_embeddings(query: Embedding, candidates: Embedding) -> tuple[np.ndarray, np.ndarray]:
    """Rank candidate embeddings (M, D) by cosine with one query (D,): (order, scores in that order).

    Used for audio → image: rank analysed places (their image embeddings) for a sound.
    """
    cands = l2n(candidates)
    if cands.ndim != 2:
        raise InputError(f"candidates must be (M, D), got {cands.shape}")
    s = cands @ l2n(query).reshape(-1)
    order = np.lexsort((np.arange(s.size), -s))
    return order, s[order].astype(np.float32)
