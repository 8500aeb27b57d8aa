"""Retrieval galleries: captions, recordings and their embeddings in one HDF5 file per gallery.

One module per job: :mod:`.schema` (the file format), :mod:`.read` (:class:`Gallery`, read lazily),
:mod:`.write` (:func:`write_gallery`), :mod:`.build` (a gallery from a CSV), :mod:`.embed` (embedding
rows with a model; re-embedding for another checkpoint, cached) and :mod:`.locate` (the official demo
gallery, ``SAT2SOUND_GALLERY``). Importing this package stays cheap: h5py and torch load on first use.
"""

from __future__ import annotations

from sat2sound_core.gallery.build import GalleryRow, build_gallery, read_gallery_csv
from sat2sound_core.gallery.embed import encode_mels, encode_texts
from sat2sound_core.gallery.locate import OFFICIAL_GALLERY, official_gallery_path, resolve_gallery
from sat2sound_core.gallery.read import Gallery, GalleryInfo
from sat2sound_core.gallery.schema import (
    DIM,
    OFFICIAL_CHECKPOINT,
    RAW_RATE,
    SCALES,
    SCHEMA_VERSION,
    SYNTH_RATE,
)
from sat2sound_core.gallery.write import write_gallery

__all__ = [
    "DIM",
    "OFFICIAL_CHECKPOINT",
    "OFFICIAL_GALLERY",
    "RAW_RATE",
    "SCALES",
    "SCHEMA_VERSION",
    "SYNTH_RATE",
    "Gallery",
    "GalleryInfo",
    "GalleryRow",
    "build_gallery",
    "encode_mels",
    "encode_texts",
    "official_gallery_path",
    "read_gallery_csv",
    "resolve_gallery",
    "write_gallery",
]
