"""Concept maps: each patch's most activated codebook concepts, grouped (the paper's Figure 6).

A codebook row ("concept") is a direction shared by images, captions and sounds. For one chip,
:func:`concept_map` takes the 196 patch scores ``s_p[c]`` (raw token·codebook products), keeps each
patch's top-k concepts, and groups patches by their top-1 concept. :meth:`ConceptMap.examples` lists
the gallery captions that activate a concept most: a caption embedding is ``e = w·C``, so
``l2n(e)·C_c`` measures how much of concept ``c`` it carries (codebook rows are nearly orthogonal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from sat2sound_core.common.errors import InputError
from sat2sound_core.maps.heatmaps import GRID, N_PATCHES, Array, GridGeometry, Heatmap, make_heatmap

if TYPE_CHECKING:
    import torch

    from sat2sound_core.gallery import Gallery

#: the codebook rows (K, D): the model's ``fdt.space_dict`` or an array of it
Codebook: TypeAlias = "torch.Tensor | np.ndarray"


@dataclass(frozen=True)
class ConceptGroup:
    """Patches whose strongest concept is ``code``: (row, col) cells, share of the chip, mean score,
    and (when a gallery was given) example captions that carry the concept."""

    code: int
    cells: tuple[tuple[int, int], ...]
    fraction: float
    mean_score: float
    examples: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class ConceptMap:
    """Per-patch top concepts of one chip and the groups they form.

    ``codes[i, j]`` / ``scores[i, j]`` are the top-k concept ids and their raw scores for the patch in
    row i, column j (best first). ``labels`` is the (14, 14) top-1 concept id per patch (the GeoTIFF
    concept band). ``groups`` are sorted by size, largest first.
    """

    codes: np.ndarray
    scores: np.ndarray
    groups: tuple[ConceptGroup, ...]
    geometry: GridGeometry
    image_weights_top: tuple[tuple[int, float], ...] = ()
    _gallery_examples: dict[int, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _patch_scores: np.ndarray | None = field(default=None, repr=False)
    _source: tuple[Gallery, Codebook, int, int] | None = field(default=None, repr=False)

    @property
    def labels(self) -> np.ndarray:
        return self.codes[..., 0]

    @property
    def top_k(self) -> int:
        return int(self.codes.shape[-1])

    def group_index(self) -> np.ndarray:
        """(14, 14) int: index into ``groups`` of each patch's group."""
        out = np.full((GRID, GRID), -1, dtype=np.int32)
        for gi, g in enumerate(self.groups):
            for r, c in g.cells:
                out[r, c] = gi
        return out

    def heatmap(self, code: int) -> Heatmap:
        """The raw score map of one concept (where on the chip it is active)."""
        if self._patch_scores is None:
            raise InputError("this concept map was built without patch scores")
        return concept_heatmap(self._patch_scores, self.geometry, code)

    def examples(self, code: int) -> tuple[str, ...]:
        """Gallery captions that carry concept ``code`` most (computed on first request for codes that
        lead no group; empty without a gallery)."""
        code = int(code)
        if code not in self._gallery_examples and self._source is not None:
            gallery, codebook, scale, n = self._source
            self._gallery_examples.update(concept_examples_batch(gallery, codebook, [code], scale, n))
        return self._gallery_examples.get(code, ())


def concept_heatmap(patch_scores: np.ndarray, geometry: GridGeometry, code: int) -> Heatmap:
    """The raw score map ``s_p[code]`` of one concept over the (196, K) patch scores."""
    code = int(code)
    if not 0 <= code < patch_scores.shape[1]:
        raise InputError(f"concept {code} does not exist; codes run from 0 to {patch_scores.shape[1] - 1}")
    return make_heatmap(patch_scores[:, code], geometry, f"concept {code}", "concept", code=code)


def concept_map(
    patch_scores: np.ndarray,
    geometry: GridGeometry,
    top_k: int = 5,
    gallery: Gallery | None = None,
    codebook: Codebook | None = None,
    scale: int = 1,
    n_examples: int = 3,
    image_weights: Array | None = None,
) -> ConceptMap:
    """Build a :class:`ConceptMap` from (196, K) patch scores.

    With ``gallery`` and ``codebook`` ((K, D) codebook rows), each group lists the ``n_examples``
    gallery captions at ``scale`` that carry its concept most.
    """
    scores = np.asarray(patch_scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[0] != N_PATCHES:
        raise InputError(f"patch scores must be ({N_PATCHES}, K), got {scores.shape}")
    k = int(top_k)
    if not 1 <= k <= scores.shape[1]:
        raise InputError(f"top_k must be within 1 … {scores.shape[1]}, got {top_k}")
    import torch

    # torch.topk is several times faster than numpy's argpartition on (196, 16000) and sorts
    top = torch.topk(torch.from_numpy(scores), k, dim=1, largest=True, sorted=True)
    codes = top.indices.numpy().astype(np.int64)
    top_scores = top.values.numpy()
    top1 = codes[:, 0]
    groups: list[ConceptGroup] = []
    examples: dict[int, tuple[str, ...]] = {}
    uniq, counts = np.unique(top1, return_counts=True)
    ordered = [int(c) for c in uniq[np.lexsort((uniq, -counts))]]
    source = (gallery, codebook, scale, n_examples) if gallery is not None and codebook is not None else None
    if source is not None and n_examples > 0:
        examples = concept_examples_batch(source[0], source[1], ordered, scale, n_examples)
    for code in ordered:
        members = np.flatnonzero(top1 == code)
        cells = tuple((int(p // GRID), int(p % GRID)) for p in members)
        groups.append(
            ConceptGroup(
                code=code,
                cells=cells,
                fraction=len(members) / N_PATCHES,
                mean_score=float(scores[members, code].mean()),
                examples=examples.get(code, ()),
            )
        )
    from sat2sound_core.maps.heatmaps import top_codes

    iw = tuple(top_codes(image_weights, 10)) if image_weights is not None else ()
    cmap = ConceptMap(
        codes=codes.reshape(GRID, GRID, k),
        scores=top_scores.reshape(GRID, GRID, k),
        groups=tuple(groups),
        geometry=geometry,
        image_weights_top=iw,
        _gallery_examples=examples,
        _patch_scores=scores,
        _source=source if n_examples > 0 else None,
    )
    return cmap


def concept_examples_batch(
    gallery: Gallery, codebook: Codebook, codes: list[int], scale: int = 1, n: int = 3
) -> dict[int, tuple[str, ...]]:
    """For each code, the n gallery captions (at ``scale``) whose normalised embedding projects most
    onto that codebook row; one (N, D) × (D, len(codes)) product for all codes."""
    from sat2sound_core.retrieval import top_k

    if not codes:
        return {}
    cb = codebook if isinstance(codebook, np.ndarray) else codebook.float().cpu().numpy()
    rows = np.asarray(cb[np.asarray(codes)], dtype=np.float32)  # (M, D)
    name = f"text_embedding_zl{scale}"
    mat = gallery.embeddings(name)
    norms = gallery.norms(name)
    proj = np.asarray(mat @ rows.T, dtype=np.float32)  # (N, M)
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = np.where(norms[:, None] > 0, proj / np.where(norms > 0, norms, 1)[:, None], -np.inf)
    out: dict[int, tuple[str, ...]] = {}
    for j, code in enumerate(codes):
        idx, _ = top_k(proj[:, j], n)
        out[int(code)] = tuple(gallery.caption(int(i), scale) for i in idx)
    return out
