"""The paper's composed-query variants and their results in the official JSON-lines schema.

With i, a, t the row's image, audio and audio-caption embeddings and l2n the L2 normalisation
(the paper's README, ``reference/paper/README.md``):

* ``none``: image queries against plain audio, audio queries against plain images;
* ``query``: the image query becomes l2n(l2n(i)+l2n(t)) against plain audio, and the audio query
  l2n(l2n(a)+l2n(t)) against plain images;
* ``audio``: the audio side is l2n(l2n(a)+l2n(t)), as the query and as the gallery.

For ``task=image-text`` the "sound" side is the caption embedding t and only ``none`` applies.
Every variant is computed from cached embeddings; the reverse direction is the transposed matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sat2sound_core.common.errors import InputError
from sat2sound_core.evaluation.metrics import RetrievalMetrics, l2_normalize, metrics_from_scores

COMPOSED = ("none", "query", "audio")
TASKS = ("image-audio", "image-text")
Array = npt.NDArray[np.float32]


def compose(a: Array, t: Array) -> Array:
    """l2n(l2n(a) + l2n(t)), the composed audio+caption vector of retrieval."""
    return l2_normalize(l2_normalize(a) + l2_normalize(t))


@dataclass(frozen=True)
class Sides:
    """The two (query, gallery) pairs of one variant: image → sound and sound → image."""

    i2s_query: Array
    i2s_gallery: Array
    s2i_query: Array
    s2i_gallery: Array


def parse_composed(value: str | list[str] | tuple[str, ...], task: str) -> tuple[str, ...]:
    """``"none,query"`` → ``("none", "query")``, validated for ``task``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(v.strip() for v in items if v.strip()))
    bad = [n for n in names if n not in COMPOSED]
    if bad or not names:
        raise InputError(f"unknown composed variant(s) {bad or [value]}; use a comma-separated list of {', '.join(COMPOSED)}")
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; use {' or '.join(TASKS)}")
    if task == "image-text" and names != ("none",):
        raise InputError("task image-text compares images with captions; composed queries apply only to "
                         "image-audio (use --composed none)")
    return names


def sides(variant: str, image: Array, audio: Array | None, text: Array | None) -> Sides:
    """Queries and galleries of ``variant`` (``audio`` None: the image-text task, text is the other side)."""
    if variant not in COMPOSED:
        raise InputError(f"unknown composed variant {variant!r}; use one of {', '.join(COMPOSED)}")
    i = l2_normalize(image)
    if audio is None:
        if text is None or variant != "none":
            raise InputError("the image-text task needs the caption embeddings and only the 'none' variant")
        t = l2_normalize(text)
        return Sides(i, t, t, i)
    a = l2_normalize(audio)
    if variant == "none":
        return Sides(i, a, a, i)
    if text is None:
        raise InputError(f"composed variant {variant!r} needs the audio-caption embeddings")
    at = compose(a, text)
    if variant == "query":
        return Sides(compose(i, text), a, at, i)
    return Sides(i, at, at, i)


@dataclass(frozen=True)
class VariantResult:
    """Both directions of one variant."""

    variant: str
    i2s: RetrievalMetrics
    s2i: RetrievalMetrics


def evaluate_variant(variant: str, image: Array, audio: Array | None, text: Array | None,
                     recall_at: float = 10.0) -> VariantResult:
    """R@k and median rank of ``variant`` in both directions (one matrix when query and gallery swap)."""
    s = sides(variant, image, audio, text)
    forward = s.i2s_query @ s.i2s_gallery.T
    if s.s2i_query is s.i2s_gallery and s.s2i_gallery is s.i2s_query:
        backward = forward.T
    else:
        backward = s.s2i_query @ s.s2i_gallery.T
    return VariantResult(variant, metrics_from_scores(forward, recall_at), metrics_from_scores(backward, recall_at))


@dataclass(frozen=True)
class RunInfo:
    """The run-level fields of the official JSON lines."""

    dataset: str
    sat_type: str
    scale: int
    metadata_type: str
    mel_index: int
    ckpt_path: str
    expr: str
    task: str = "image-audio"


def record(info: RunInfo, result: VariantResult) -> dict[str, object]:
    """One JSON line in the official schema (``task`` is added only for image-text)."""
    out: dict[str, object] = {
        "test_mel_index": info.mel_index,
        "test_zoom_level": info.scale,
        "dataset_type": info.dataset,
        "overhead_type": info.sat_type,
        "metadata_type": info.metadata_type,
        "expr": info.expr,
        "ckpt_path": info.ckpt_path,
        "addtextto": result.variant,
        "I2S_Recall": result.i2s.recall,
        "I2S_Median_Rank": result.i2s.median_rank,
        "S2I_Recall": result.s2i.recall,
        "S2I_Median_Rank": result.s2i.median_rank,
    }
    if info.task != "image-audio":
        out["task"] = info.task
    return out
