"""Soundscape heatmaps on a chip's 14×14 patch grid, with the chip's exact geography.

A :class:`Heatmap` is a float32 (14, 14) array (row 0 = the chip's top/north edge) plus the CRS,
affine transform and bounds of that grid, so it can be drawn on a map (:mod:`sat2sound_core.maps.render`)
or written as a GeoTIFF (:mod:`sat2sound_core.export`) without guessing where it lies.

Two families of maps are computed from the image's per-patch codebook scores ``s_p[c]``
(:func:`patch_scores`: the raw token·codebook dot products of the 196 image tokens, metadata tokens
dropped):

* :func:`word_heatmap_values`: the official demo definition. For each chosen word, the first caption
  token that matches it (:func:`match_word`) is found, that token's strongest code ``c*`` (argmax over
  its text token scores) is taken, and the map is ``s_p[c*]``; several words are averaged.
* :func:`query_relevance`: one definition for every whole query (text, audio clip, composed
  audio+caption, whose weights :func:`composed_weights` gives): relevance of patch p is
  ``r_p = Σ_c w[c] · s_p[c]``, where ``w`` are the query's sparse codebook weights (the weights with
  ``embedding = w · C``). Because ``s_p = q_p · Cᵀ`` this equals ``q_p · e_query``: the patch's query
  vector against the query embedding. See ``docs/heatmaps.md`` for the reasoning.

The kinds of heatmap (which inputs, which of these functions) are registered in
:mod:`sat2sound_core.maps.kinds`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np
from affine import Affine

from sat2sound_core.common.errors import InputError

if TYPE_CHECKING:
    import numpy.typing as npt
    import torch
    from rasterio.crs import CRS

GRID = 14
N_PATCHES = GRID * GRID

#: arrays the math accepts: numpy arrays (or lists) and torch tensors (bf16/fp16 are read as float32)
Array: TypeAlias = "npt.ArrayLike | torch.Tensor"


class GeoreferencedImage(Protocol):
    """What the patch grid needs of a chip (``tiles.Chip`` is one): pixels, CRS and affine transform."""

    @property
    def image(self) -> np.ndarray: ...

    @property
    def crs(self) -> CRS: ...

    @property
    def transform(self) -> Affine: ...


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
    crs: CRS
    transform: Affine
    bounds: tuple[float, float, float, float]
    lonlat_bounds: tuple[float, float, float, float]
    details: dict[str, object] = field(default_factory=dict)

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

    def to_rgba(
        self,
        size: int | tuple[int, int] = 256,
        cmap: str = "soundscape",
        vmin: float | None = None,
        vmax: float | None = None,
        opacity: float = 0.7,
        smooth: bool = True,
        mercator: bool = True,
        alpha_ramp: float = 0.0,
    ) -> np.ndarray:
        """Colour-mapped RGBA image (size, size, 4) uint8, rows linear in web-mercator.

        Ready for ``folium.raster_layers.ImageOverlay(image, bounds=self.overlay_bounds)``; the options
        are those of :func:`sat2sound_core.maps.render.heatmap_rgba`.
        """
        from sat2sound_core.maps.render import heatmap_rgba

        return heatmap_rgba(self, size=size, cmap=cmap, vmin=vmin, vmax=vmax, opacity=opacity, smooth=smooth,
                            mercator=mercator, alpha_ramp=alpha_ramp)

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

    crs: CRS
    transform: Affine
    bounds: tuple[float, float, float, float]
    lonlat_bounds: tuple[float, float, float, float]


def grid_geometry(chip: GeoreferencedImage, n: int = GRID) -> GridGeometry:
    """The geometry of an n×n patch grid over ``chip`` (anything with ``image``, ``crs``, ``transform``).

    Derived from the chip's transform and pixel size alone (the grid splits the chip image into
    n equal cells, as the ViT does after the resize to 224²), so it is exact for any CRS.
    """
    from rasterio.warp import transform_bounds

    height, width = np.asarray(chip.image).shape[:2]
    transform = chip.transform @ Affine.scale(width / n, height / n)
    x0, y0 = chip.transform @ (0, 0)
    x1, y1 = chip.transform @ (width, height)
    bounds = _box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    chip_lonlat = getattr(chip, "lonlat_bounds", None)
    if chip_lonlat is not None:  # tiles.Chip knows its lon/lat box (also across the antimeridian)
        lonlat = _box(*chip_lonlat)
    elif _is_lonlat(chip.crs):
        lonlat = bounds
    else:
        lonlat = _box(*transform_bounds(chip.crs, "EPSG:4326", *bounds, densify_pts=21))
    return GridGeometry(chip.crs, transform, bounds, lonlat)


def _box(a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    return (float(a), float(b), float(c), float(d))


def _is_lonlat(crs: CRS) -> bool:
    from rasterio.crs import CRS

    try:
        return bool(CRS.from_user_input(crs).to_epsg() == 4326)
    except Exception:  # pragma: no cover - exotic CRS objects
        return False


def make_heatmap(
    values: Array, geometry: GridGeometry, query: str, kind: str, **details: object
) -> Heatmap:
    """Wrap a (196,) or (14, 14) array as a :class:`Heatmap` of a registered ``kind`` on ``geometry``."""
    from sat2sound_core.maps.kinds import get_kind

    arr = _to_numpy(values).astype(np.float32, copy=False)
    if arr.shape == (N_PATCHES,):
        arr = arr.reshape(GRID, GRID)
    get_kind(kind)  # an unknown kind raises, listing the registered ones
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


def patch_scores(token_scores: Array) -> np.ndarray:
    """The (196, K) float32 image-patch scores from an image ``Encoding.token_scores``.

    Accepts (1, N, K) or (N, K) with N ≥ 196; the metadata tokens (which the model appends after the
    196 image tokens) are dropped, as the official demo does.
    """
    arr = _to_numpy(token_scores)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise InputError(f"expected token scores of one image, got batch of {arr.shape[0]}")
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[0] < N_PATCHES:
        raise InputError(f"image token scores must be (N>={N_PATCHES}, K), got {arr.shape}")
    return np.ascontiguousarray(arr[:N_PATCHES], dtype=np.float32)


def query_relevance(scores: np.ndarray, weights: Array) -> np.ndarray:
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
    audio_weights: Array, audio_embedding: Array, text_weights: Array, text_embedding: Array
) -> np.ndarray:
    """Codebook weights of the composed query ``l2n(l2n(a) + l2n(c))`` (the composition retrieval uses
    for an audio clip plus a caption), summing to 1.

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
    return np.asarray(w / w.sum(), dtype=np.float32)


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
    scores: np.ndarray, text_token_scores: Array, tokens: Sequence[str], words: str | Sequence[str]
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


def top_codes(weights: Array, n: int = 10) -> list[tuple[int, float]]:
    """The n largest codebook weights of a query as (code, weight), largest first."""
    w = _to_numpy(weights).reshape(-1)
    n = min(n, w.shape[0])
    idx = np.argpartition(-w, n - 1)[:n]
    idx = idx[np.argsort(-w[idx], kind="stable")]
    return [(int(i), float(w[i])) for i in idx if w[i] > 0]


def _to_numpy(x: Array) -> np.ndarray:
    detach = getattr(x, "detach", None)
    if detach is not None:  # a torch tensor (torch is not imported for numpy inputs)
        t = detach()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()
        return np.asarray(t.cpu().numpy())
    return np.asarray(x)
