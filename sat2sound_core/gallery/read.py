"""Reading a gallery: :class:`Gallery`, the lazily opened HDF5 file (schema in :mod:`.schema`).

A gallery opens in milliseconds whatever its size: nothing is read until asked, uncompressed contiguous
embedding datasets are memory-mapped, captions and audio are read per row.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.progress import ProgressCallback
from sat2sound_core.gallery.schema import OFFICIAL_CHECKPOINT, RAW_RATE, SCALES, SYNTH_RATE

if TYPE_CHECKING:
    import h5py

    from sat2sound_core.model.sat2sound import Sat2Sound

log = logging.getLogger(__name__)

_BLOCK = 4096  # rows per read when a matrix is copied or its norms computed
#: datasets with one entry per row (besides the embeddings)
_PER_ROW = ("sample_id", "llava_caption_zl", "audio_caption", "audio_raw", "audio_length", "synth_audio_zl")
#: a dataset may declare at most this many times more bytes than the file stores for it (gzip's best ratio
#: on zeros is ~1000:1; a gallery that declares 1e8 rows in a 6 KB file would otherwise allocate gigabytes)
_MAX_EXPANSION = 1024
_SLACK_BYTES = 1 << 20

#: one row's playable audio: samples (T,) or (C, T) float32 and their sample rate
Clip = tuple[np.ndarray, int]


def _decode(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return value.tobytes().decode("utf-8", errors="replace").rstrip("\x00")
    return str(value)


@dataclass(frozen=True)
class GalleryInfo:
    """What ``sat2sound gallery info`` prints: size, scales, audio, checkpoint."""

    path: str
    rows: int
    scales: tuple[int, ...]
    has_audio_embedding: bool
    has_raw_audio: bool
    synth_audio_scales: tuple[int, ...]
    checkpoint: str
    size_bytes: int


class Gallery:
    """A lazily read retrieval gallery (see :mod:`sat2sound_core.gallery.schema` for the layout).

    Open with ``Gallery(path)``; the file handle is opened on first use and shared across threads
    with a lock (h5py is not thread-safe). Embedding matrices are memory-mapped when the dataset is
    contiguous and uncompressed, otherwise read once in blocks (and converted to float32 once when stored
    in another dtype). ``checkpoint`` and ``embeddings`` describe matrices that replace the file's (the
    same rows embedded by another checkpoint, :meth:`for_checkpoint`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        checkpoint: str | None = None,
        embeddings: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"gallery file {self.path} does not exist; build one with `sat2sound gallery build`")
        self._lock = threading.RLock()
        self._h5: h5py.File | None = None
        self._matrices: dict[str, np.ndarray] = {}
        self._norms: dict[str, np.ndarray] = {}
        self._overrides: dict[str, np.ndarray] = dict(embeddings or {})
        self._checkpoint_override = checkpoint
        self._validate()

    # ---- file access --------------------------------------------------------------------------
    @property
    def h5(self) -> h5py.File:
        with self._lock:
            if self._h5 is None:
                import h5py

                try:
                    self._h5 = h5py.File(self.path, "r")
                except OSError as exc:
                    raise InputError(f"{self.path} is not a readable HDF5 gallery ({exc})") from None
            return self._h5

    def close(self) -> None:
        with self._lock:
            if self._h5 is not None:
                self._h5.close()
                self._h5 = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _validate(self) -> None:
        f = self.h5
        keys = set(f.keys())
        missing = []
        if "sample_id" not in keys:
            missing.append("sample_id")
        if not any(f"text_embedding_zl{s}" in keys for s in SCALES) and "audio_embedding" not in keys:
            missing.append("text_embedding_zl{1,3,5} or audio_embedding")
        if missing:
            raise InputError(
                f"{self.path} does not match the gallery schema: missing {', '.join(missing)} "
                "(see `sat2sound gallery build --help` for the expected layout)"
            )
        for name in sorted(keys):
            _check_entry(self.path, f, name)
        n = f["sample_id"].shape[0]
        for name in keys:
            if name.startswith(("text_embedding_zl", "audio_embedding")):
                shape = f[name].shape
                if len(shape) != 2 or shape[0] != n:
                    raise InputError(
                        f"{self.path}: dataset {name} has shape {shape}, expected ({n}, D) like sample_id"
                    )
            elif name.startswith(_PER_ROW) and f[name].shape[0] != n:
                raise InputError(f"{self.path}: dataset {name} has {f[name].shape[0]} rows, expected {n}")
        for s in SCALES:
            if (f"text_embedding_zl{s}" in keys) != (f"llava_caption_zl{s}" in keys):
                raise InputError(f"{self.path}: text_embedding_zl{s} and llava_caption_zl{s} must come together")
        _check_stored_size(self.path, f, int(n))
        self.rows = int(n)

    # ---- description --------------------------------------------------------------------------
    @property
    def checkpoint(self) -> str:
        """Checkpoint whose text/audio path produced the embeddings served now."""
        if self._checkpoint_override:
            return self._checkpoint_override
        return _decode(self.h5.attrs.get("checkpoint", OFFICIAL_CHECKPOINT))

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(s for s in SCALES if f"text_embedding_zl{s}" in self.h5)

    def info(self) -> GalleryInfo:
        f = self.h5
        return GalleryInfo(
            path=str(self.path),
            rows=self.rows,
            scales=self.scales,
            has_audio_embedding="audio_embedding" in f,
            has_raw_audio="audio_raw" in f,
            synth_audio_scales=tuple(s for s in SCALES if f"synth_audio_zl{s}" in f),
            checkpoint=self.checkpoint,
            size_bytes=self.path.stat().st_size,
        )

    def __len__(self) -> int:
        return self.rows

    def fingerprint(self) -> str:
        """A short hash of the file's path, size and modification time (names its re-embedding cache)."""
        st = self.path.stat()
        key = f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    # ---- rows ---------------------------------------------------------------------------------
    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.rows:
            raise InputError(f"row {row} is outside this gallery (0 … {self.rows - 1})")

    def _string(self, name: str, row: int) -> str:
        self._check_row(row)
        with self._lock:
            if name not in self.h5:
                return ""
            return _decode(self.h5[name][row])

    def sample_id(self, row: int) -> str:
        return self._string("sample_id", row)

    def caption(self, row: int, scale: int) -> str:
        """The LLaVA (image) caption of ``row`` at ``scale``."""
        return self._string(f"llava_caption_zl{scale}", row)

    def audio_caption(self, row: int) -> str:
        return self._string("audio_caption", row)

    def strings(self, name: str) -> list[str]:
        """All values of a string dataset (reads the whole column; for building and exports)."""
        with self._lock:
            return [_decode(v) for v in self.h5[name][()]]

    # ---- embeddings ---------------------------------------------------------------------------
    def embeddings(self, name: str) -> np.ndarray:
        """(N, D) matrix of ``name`` (``text_embedding_zl{s}`` or ``audio_embedding``), lazily mapped."""
        if name in self._overrides:
            return self._overrides[name]
        with self._lock:
            if name in self._matrices:
                return self._matrices[name]
            if name not in self.h5:
                have = ", ".join(k for k in self.h5 if "embedding" in k)
                raise InputError(f"gallery {self.path.name} has no {name} (it has: {have})")
            ds = self.h5[name]
            mat: np.ndarray
            offset = ds.id.get_offset() if ds.chunks is None and ds.compression is None else None
            if offset is not None and ds.dtype == np.float32 and ds.dtype.isnative:
                mat = np.memmap(self.path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape)
            else:
                mat = np.empty(ds.shape, dtype=np.float32)
                for start in range(0, ds.shape[0], _BLOCK):
                    mat[start : start + _BLOCK] = ds[start : start + _BLOCK]
            self._matrices[name] = mat
            return mat

    def norms(self, name: str) -> np.ndarray:
        """Row L2 norms of an embedding matrix (computed once in blocks, zero rows stay 0)."""
        with self._lock:
            if name not in self._norms:
                mat = self.embeddings(name)
                out = np.empty(mat.shape[0], dtype=np.float32)
                for start in range(0, mat.shape[0], _BLOCK):
                    block = np.asarray(mat[start : start + _BLOCK], dtype=np.float32)
                    out[start : start + _BLOCK] = np.linalg.norm(block, axis=1)
                self._norms[name] = out
            return self._norms[name]

    def scores(self, name: str, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of every row of ``name`` with ``query`` (N,) float32; rows whose
        embedding is all zero (no audio) score -inf."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        nq = float(np.linalg.norm(q))
        if nq == 0 or not np.isfinite(nq):
            raise InputError("the query embedding is zero or not finite")
        mat = self.embeddings(name)
        if mat.shape[1] != q.shape[0]:
            raise InputError(f"query has {q.shape[0]} dimensions but {name} has {mat.shape[1]}")
        raw = np.asarray(mat @ (q / nq), dtype=np.float32)
        n = self.norms(name)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(n > 0, raw / np.where(n > 0, n, 1), -np.inf).astype(np.float32)
        return out

    # ---- audio --------------------------------------------------------------------------------
    def _audio_dataset(self, name: str, row: int, default_rate: int) -> Clip | None:
        with self._lock:
            if name not in self.h5:
                return None
            ds = self.h5[name]
            raw = ds[row]
            try:
                rate = int(ds.attrs.get("sample_rate", default_rate))
                channels = int(ds.attrs.get("channels", 1))
            except (TypeError, ValueError):
                raise InputError(f"gallery audio {name}: its sample_rate/channels attributes are not integers") from None
        encoded = _encoded_bytes(raw)
        if encoded is not None:  # a whole audio file stored per row (wav/flac/ogg bytes)
            if not encoded:
                return None
            decoded, file_rate = _decode_audio_file(encoded, f"{name}[{row}]")
            return (decoded, file_rate) if decoded.size and np.any(decoded) else None
        arr = np.asarray(raw)
        if arr.ndim > 2:
            raise InputError(
                f"gallery audio {name}[{row}] has shape {arr.shape}; expected (samples,) or (channels, samples)"
            )
        if rate <= 0 or rate > 1_000_000:
            raise InputError(f"gallery audio {name} has sample_rate {rate}; expected a rate in Hz")
        data = _as_playable(arr, f"{name}[{row}]")
        if data.size == 0 or not np.any(data):
            return None
        if data.ndim == 1 and channels > 1:
            if channels > 64 or data.size % channels:
                raise InputError(
                    f"gallery audio {name}[{row}] has {data.size} samples, not a multiple of its {channels} channels"
                )
            data = data.reshape(channels, -1)
        return data, rate

    def audio(self, row: int, scale: int | None = None) -> Clip | None:
        """Playable audio for a row: the pre-synthesised clip for ``scale`` when present, else the raw
        recording; (samples (T,) or (C, T) float32, sample rate) or None when the row has none."""
        self._check_row(row)
        if scale is not None:
            synth = self._audio_dataset(f"synth_audio_zl{scale}", row, SYNTH_RATE)
            if synth is not None:
                return synth
        return self._audio_dataset("audio_raw", row, RAW_RATE)

    def has_audio(self, row: int, scale: int | None = None) -> bool:
        """Whether the row has playable audio, read as cheaply as the layout allows: the
        ``audio_length`` index of galleries written here; a fixed-shape audio dataset (one clip per
        row, as the official gallery stores them) counts as present without reading it; only
        variable-length rows are read to check."""
        with self._lock:
            f = self.h5
            names = ([f"synth_audio_zl{scale}"] if scale is not None else []) + ["audio_raw"]
            for name in names:
                if name not in f:
                    continue
                if name == "audio_raw" and "audio_length" in f:
                    if int(f["audio_length"][row]) > 0:
                        return True
                    continue
                ds = f[name]
                if ds.dtype.kind != "O" and ds.ndim >= 2:
                    return True
                if self._audio_dataset(name, row, SYNTH_RATE) is not None:
                    return True
        return False

    # ---- other checkpoints --------------------------------------------------------------------
    def for_checkpoint(
        self,
        model: Sat2Sound,
        checkpoint: str,
        cache_dir: Path | None = None,
        progress: ProgressCallback | None = None,
        batch_size: int = 32,
    ) -> Gallery:
        """This gallery with embeddings from ``model`` (named ``checkpoint``).

        Returns ``self`` when the file's embeddings already belong to ``checkpoint``. Otherwise the
        captions go through ``model.encode_text`` and the raw audio through ``log_mel`` +
        ``model.encode_audio``; results are cached as ``.npy`` under ``SAT2SOUND_HOME/galleries`` (or
        ``cache_dir``) and memory-mapped (:func:`sat2sound_core.gallery.embed.for_checkpoint`).
        """
        from sat2sound_core.gallery.embed import for_checkpoint

        return for_checkpoint(self, model, checkpoint, cache_dir, progress, batch_size)


def _check_entry(path: Path, f: h5py.File, name: str) -> None:
    """Refuse a root entry that could make the reader print another file or is not a plain dataset:
    external links, datasets with external storage (``external=[("/etc/passwd", 0, n)]``), virtual datasets,
    and groups or scalars where the schema has a per-row dataset."""
    import h5py

    link = f.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise InputError(
            f"{path}: {name} is an external link to {link.filename}; galleries must hold their own data "
            "(rebuild it with `sat2sound gallery build`)"
        )
    obj = f.get(name)
    if obj is None:  # a dangling soft link
        raise InputError(f"{path}: {name} is a link to nothing; rebuild the gallery with `sat2sound gallery build`")
    if not isinstance(obj, h5py.Dataset):
        if name.startswith(_PER_ROW + ("text_embedding_zl", "audio_embedding")):
            raise InputError(f"{path}: {name} is a group, expected a dataset with one entry per row")
        return
    if obj.is_virtual:
        raise InputError(
            f"{path}: dataset {name} is a virtual dataset (its data lives in other files); "
            "galleries must hold their own data (rebuild it with `sat2sound gallery build`)"
        )
    if obj.id.get_create_plist().get_external_count() > 0:
        raise InputError(
            f"{path}: dataset {name} stores its data in an external file; galleries must hold their own data "
            "(rebuild it with `sat2sound gallery build`)"
        )
    if name.startswith(_PER_ROW + ("text_embedding_zl", "audio_embedding")) and obj.ndim == 0:
        raise InputError(f"{path}: dataset {name} is a scalar, expected one entry per row")


def _check_stored_size(path: Path, f: h5py.File, rows: int) -> None:
    """Refuse a file that declares far more data than it stores (unallocated chunks read as fill values)."""
    size = path.stat().st_size
    if rows > max(size, 1):
        raise InputError(
            f"{path}: declares {rows} rows in a file of {size} bytes; the file is damaged or forged "
            "(rebuild it with `sat2sound gallery build`)"
        )
    for name in f:
        ds = f[name]
        if not name.startswith(("text_embedding_zl", "audio_embedding")):
            continue
        declared = int(ds.size) * 4
        stored = int(ds.id.get_storage_size())
        if declared > _SLACK_BYTES and declared > _MAX_EXPANSION * stored:
            raise InputError(
                f"{path}: dataset {name} declares {ds.shape} values but stores only {stored} bytes; the file "
                "is damaged or forged (rebuild it with `sat2sound gallery build`)"
            )


def _as_playable(raw: np.ndarray, what: str) -> np.ndarray:
    """Stored samples as float32 in [-1, 1]: integer PCM scaled by its full range, non-finite samples
    (damaged rows) silenced and floats beyond ±1 scaled down, so nothing clicks or clips."""
    if raw.dtype.kind == "b" or raw.dtype.kind not in "fiu":
        raise InputError(f"gallery audio {what} has dtype {raw.dtype}; expected float or integer PCM samples")
    if raw.dtype.kind == "i":
        data = raw.astype(np.float32) / float(2 ** (8 * raw.dtype.itemsize - 1))
    elif raw.dtype.kind == "u":
        half = float(2 ** (8 * raw.dtype.itemsize - 1))
        data = (raw.astype(np.float32) - half) / half
    else:
        data = np.asarray(raw, dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        log.warning("gallery audio %s has %d NaN/infinite samples; they are silenced", what, int(bad.sum()))
        data = np.where(bad, np.float32(0.0), data)
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > 1.0:
        data = data * np.float32(0.98 / peak)
    return np.ascontiguousarray(data, dtype=np.float32)


def _encoded_bytes(raw: object) -> bytes | None:
    """The bytes of an encoded audio file stored in one HDF5 cell, or None for plain samples."""
    if isinstance(raw, bytes | np.bytes_):
        return bytes(raw)
    if isinstance(raw, np.void):
        return raw.tobytes()
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8:
        return raw.tobytes()
    return None


def _decode_audio_file(data: bytes, what: str) -> Clip:
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors vary by format
        raise InputError(f"gallery audio {what} cannot be decoded ({exc})") from None
    samples = _as_playable(samples, what)
    return np.ascontiguousarray(samples.T if samples.shape[1] > 1 else samples[:, 0]), int(rate)
