"""Soundscape heatmaps on a chip's 14×14 patch grid, with the chip's exact geography.

A :class:`Heatmap` is a float32 (14, 14) array (row 0 = the chip's top/north edge) plus the CRS,
affine transform and bounds of that grid, so it can be drawn on a map (:mod:`sat2sound_core.maps.render`)
or written as a GeoTIFF (:mod:`sat2sound_core.export`) without guessing where it lies.

Two families of maps are computed from the image's per-patch codebook scores ``s_p[c]`` (the raw
token·codebook dot products of the 196 image tokens, metadata tokens dropped):

* :func:`word_heatmap`: the official demo definition. For each chosen word, the first caption token
  that matches it is found, that token's strongest code ``c*`` (argmax over its text token scores) is
  taken, and the map is ``s_p[c*]``; several words are averaged.
* :func:`query_heatmap`: one definition for every whole query (text, audio clip, composed
  audio+caption): relevance of patch p is ``r_p = Σ_c w[c] · s_p[c]``, where ``w`` are the query's
  sparse codebook weights (the weights with ``embedding = w · C``). Because ``s_p = q_p · Cᵀ`` this
  equals ``q_p · e_query``: the patch's query vector against the query embedding. See
  ``docs/heatmaps.md`` for the reasoning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine

from sat2sound_core.common.errors import InputError

GRID = 14
N_PATCHES = GRID * GRID

# the kinds of heatmap this module produces (also used as a GeoTIFF band tag)
KINDS = ("word", "text", "audio", "composed", "concept")


@dataclass(frozen=True, eq=False)
class Heatmap:
    """A (14, 14) float32 map over a chip's patch grid, with its geography.

    ``values[i, j]`` belongs to the patch in row ``i`` (from the top) and column ``j`` (from the
    left) of the chip image. ``transform`` maps (col, row) of the 14×14 grid to ``crs`` coordinates;
    ``bounds`` is (left, bottom, right, top) in ``crs`` and ``lonlat_bounds`` (west, south, east,
    north) in degrees. ``details`` records how the map was made (codes used, tokens matched, …).
    """

    values: np.ndarray
    query: str
    kind: str
    crs: Any
    transform: Affine
    bounds: tuple[float, float, float, float]
    lonlat_bounds: tuple[float, float, float, float]
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim != 2:
            raise InputError(f"a heatmap must be 2-D, got shape {values.shape}")
        object.__setattr__(self, "values", values)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    @property
    def overlay_bounds(self) -> list[list[float]]:
        """[[south, west], [north, east]] as folium's ``ImageOverlay(bounds=...)`` wants them."""
        west, south, east, north = self.lonlat_bounds
        return [[south, west], [north, east]]

    def to_rgba(self, size: int = 256, cmap: str = "soundscape", **kwargs: Any) -> np.ndarray:
        """Colour-mapped RGBA image (size, size, 4) uint8, rows linear in web-mercator.

        Ready for ``folium.raster_layers.ImageOverlay(image, bounds=self.overlay_bounds)``; see
        :func:`sat2sound_core.maps.render.heatmap_rgba` for the options (vmin, vmax, opacity, smooth).
        """
        from sat2sound_core.maps.render import heatmap_rgba

        return heatmap_rgba(self, size=size, cmap=cmap, **kwargs)

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        """Centre of one patch cell in ``crs`` coordinates (x, y)."""
        x, y = self.transform @ (col + 0.5, row + 0.5)
        return float(x), float(y)

    def value_at(self, x: float, y: float) -> float:
        """The value of the cell containing the point (x, y) given in ``crs`` coordinates."""
        col, row = ~self.transform @ (x, y)
        r, c = int(math.floor(row)), int(math.floor(col))
        if not (0 <= r < self.values.shape[0] and 0 <= c < self.values.shape[1]):
            raise InputError(f"point ({x}, {y}) lies outside this heatmap's bounds {self.bounds}")
        return float(self.values[r, c])


@dataclass(frozen=True)
class GridGeometry:
    """CRS, transform and bounds of the patch grid laid over one chip image."""

    crs: Any
    transform: Affine
    bounds: tuple[float, float, float, float]
    lonlat_bounds: tuple[float, float, float, float]


def grid_geometry(chip: Any, n: int = GRID) -> GridGeometry:
    """The geometry of an n×n patch grid over ``chip`` (anything with ``image``, ``crs``, ``transform``).

    Derived from the chip's transform and pixel size alone (the grid splits the chip image into
    n equal cells, as the ViT does after the resize to 224²), so it is exact for any CRS.
    """
    from rasterio.warp import transform_bounds

    height, width = np.asarray(chip.image).shape[:2]
    transform = chip.transform @ Affine.scale(width / n, height / n)
    x0, y0 = chip.transform @ (0, 0)
    x1, y1 = chip.transform @ (width, height)
    bounds = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    chip_lonlat = getattr(chip, "lonlat_bounds", None)
    if chip_lonlat is not None:  # tiles.Chip knows its lon/lat box (also across the antimeridian)
        lonlat = tuple(float(v) for v in chip_lonlat)
    elif _is_lonlat(chip.crs):
        lonlat = bounds
    else:
        lonlat = tuple(float(v) for v in transform_bounds(chip.crs, "EPSG:4326", *bounds, densify_pts=21))
    return GridGeometry(
        chip.crs,
        transform,
        tuple(float(v) for v in bounds),  # type: ignore[arg-type]
        lonlat,  # type: ignore[arg-type]
    )


def _is_lonlat(crs: Any) -> bool:
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(crs).to_epsg() == 4326
    except Exception:  # pragma: no cover - exotic CRS objects
        return False


def make_heatmap(
    values: np.ndarray, geometry: GridGeometry, query: str, kind: str, **details: Any
) -> Heatmap:
    """Wrap a (196,) or (14, 14) array as a :class:`Heatmap` on ``geometry``."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.shape == (N_PATCHES,):
        arr = arr.reshape(GRID, GRID)
    if kind not in KINDS:
        raise InputError(f"unknown heatmap kind {kind!r}; use one of {', '.join(KINDS)}")
    return Heatmap(
        values=arr,
        query=query,
        kind=kind,
        crs=geometry.crs,
        transform=geometry.transform,
        bounds=geometry.bounds,
        lonlat_bounds=geometry.lonlat_bounds,
        details=dict(details),
    )


# --------------------------------------------------------------------------------------------------
# math


def patch_scores(token_scores: Any) -> np.ndarray:
    """The (196, K) float32 image-patch scores from an image ``Encoding.token_scores``.

    Accepts (1, N, K) or (N, K) with N ≥ 196; metadata tokens (appended after the 196 image tokens,
    MODEL.md §7) are dropped, as the official demo does.
    """
    arr = _to_numpy(token_scores)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise InputError(f"expected token scores of one image, got batch of {arr.shape[0]}")
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[0] < N_PATCHES:
        raise InputError(f"image token scores must be (N>={N_PATCHES}, K), got {arr.shape}")
    return np.ascontiguousarray(arr[:N_PATCHES], dtype=np.float32)


def query_relevance(scores: np.ndarray, weights: Any) -> np.ndarray:
    """Patch relevance ``r_p = Σ_c w[c] · s_p[c]`` for codebook weights ``w`` (K,) → (P,) float32.

    Only the non-zero weights are visited (sparsemax weights touch ~20% of the codes at most), so
    this is a (P × nnz) product. Raises :class:`InputError` for an all-zero or non-finite query.
    """
    w = _to_numpy(weights).astype(np.float32).reshape(-1)
    if w.shape[0] != scores.shape[1]:
        raise InputError(f"query has {w.shape[0]} codebook weights but the image has {scores.shape[1]}")
    if not np.all(np.isfinite(w)):
        raise InputError("the query's codebook weights are not finite")
    nz = np.flatnonzero(w)
    if nz.size == 0:
        raise InputError("the query activates no codebook concept (all weights are zero)")
    return (scores[:, nz] @ w[nz]).astype(np.float32)


def composed_weights(
    audio_weights: Any, audio_embedding: Any, text_weights: Any, text_embedding: Any
) -> np.ndarray:
    """Codebook weights of the composed query ``l2n(l2n(a) + l2n(c))`` (MODEL.md §9), summing to 1.

    Since ``a = w_a·C`` and ``c = w_c·C``, ``l2n(a) + l2n(c) = (w_a/|a| + w_c/|c|)·C``; the weights are
    rescaled to sum to 1 so composed maps sit on the same scale as single-query maps.
    """
    wa = _to_numpy(audio_weights).astype(np.float64).reshape(-1)
    wc = _to_numpy(text_weights).astype(np.float64).reshape(-1)
    na = float(np.linalg.norm(_to_numpy(audio_embedding)))
    nc = float(np.linalg.norm(_to_numpy(text_embedding)))
    if na == 0 or nc == 0:
        raise InputError("cannot compose a query from a zero embedding")
    w = wa / na + wc / nc
    return (w / w.sum()).astype(np.float32)


@dataclass(frozen=True)
class WordMatch:
    """How one word of a caption was matched: token position, token text, strongest code."""

    word: str
    token_index: int
    token: str
    code: int


def clean_token(token: str) -> str:
    """A tokenizer piece without SentencePiece/BPE word markers, lower-cased."""
    return token.replace("\u2581", "").replace("\u0120", "").replace("##", "").strip().lower()


def match_word(word: str, tokens: Sequence[str]) -> int:
    """Index of the caption token that stands for ``word`` (the official demo's substring match).

    The first token whose text contains the word wins (the demo's rule); a word split into several
    pieces (``birds`` → ``▁bird`` ``s``) falls back to the first piece that starts the word.
    Raises :class:`InputError` naming the caption's tokens when nothing matches.
    """
    w = word.strip().lower()
    if not w:
        raise InputError("empty word: choose a word that appears in the caption")
    cleaned = [clean_token(t) for t in tokens]
    for i, tok in enumerate(cleaned):
        if tok and w in tok:
            return i
    for i, (raw, tok) in enumerate(zip(tokens, cleaned, strict=True)):
        starts_word = raw.startswith(("\u2581", "\u0120")) or i == 0
        if tok and len(tok) >= 2 and starts_word and w.startswith(tok):
            return i
    shown = " ".join(t for t in tokens if clean_token(t)) or "(none)"
    raise InputError(f"the word {word!r} is not among the caption's tokens: {shown}")


def word_heatmap_values(
    scores: np.ndarray, text_token_scores: Any, tokens: Sequence[str], words: Sequence[str]
) -> tuple[np.ndarray, list[WordMatch]]:
    """Official demo word map: per word, its token's argmax code ``c*``; map = mean over words of s_p[c*].

    ``text_token_scores`` is (L, K) or (1, L, K) (raw token·codebook products of the caption),
    ``tokens`` the L token strings. Returns the (196,) values and the matches.
    """
    if isinstance(words, str):
        words = [words]
    words = [w for w in words if w and w.strip()]
    if not words:
        raise InputError("no word given: choose one or more words of the caption")
    tts = _to_numpy(text_token_scores)
    if tts.ndim == 3:
        tts = tts[0]
    if tts.shape[0] < len(tokens):
        raise InputError(f"{len(tokens)} tokens but only {tts.shape[0]} rows of text token scores")
    matches: list[WordMatch] = []
    acc = np.zeros(scores.shape[0], dtype=np.float64)
    for word in words:
        idx = match_word(word, tokens)
        code = int(np.argmax(tts[idx]))
        matches.append(WordMatch(word=word, token_index=idx, token=tokens[idx], code=code))
        acc += scores[:, code]
    return (acc / len(words)).astype(np.float32), matches


def top_codes(weights: Any, n: int = 10) -> list[tuple[int, float]]:
    """The n largest codebook weights of a query as (code, weight), largest first."""
    w = _to_numpy(weights).reshape(-1)
    n = min(n, w.shape[0])
    idx = np.argpartition(-w, n - 1)[:n]
    idx = idx[np.argsort(-w[idx], kind="stable")]
    return [(int(i), float(w[i])) for i in idx if w[i] > 0]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        return np.asarray(x.cpu().numpy())
    return np.asarray(x)
