"""Retrieval galleries: the official demo HDF5 schema, read lazily; building one from a CSV.

Schema (MODEL.md §10; N rows, one per recording):

==========================  ==================================================================
``sample_id``               (N,) strings
``audio_caption``           (N,) strings: caption of the recording
``llava_caption_zl{s}``     (N,) strings: LLaVA caption of the satellite image at scale s ∈ {1,3,5}
``text_embedding_zl{s}``    (N, 1024) float: text-path embedding of ``llava_caption_zl{s}``
``audio_embedding``         (N, 1024) float: audio-path embedding of the recording
``audio_raw``               (N,) per-row raw audio (optional; attr ``sample_rate``, default 32000)
``synth_audio_zl{s}``       per-row (channels, time) or (time,) audio at 44.1 kHz (optional)
==========================  ==================================================================

Root attributes written by this product (all optional when reading): ``checkpoint`` (whose text/audio
path made the embeddings; the official gallery is ``bingmap_withmeta``), ``schema_version``,
``created_by``. A gallery opens in milliseconds whatever its size: nothing is read until asked,
uncompressed contiguous embedding datasets are memory-mapped, captions and audio are read per row.

Embeddings belong to one checkpoint. :meth:`Gallery.for_checkpoint` recomputes them with another
checkpoint's text and audio path once and caches them as ``.npy`` files under
``SAT2SOUND_HOME/galleries``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sat2sound_core.common.errors import DownloadError, InputError
from sat2sound_core.common.progress import ProgressCallback, report

log = logging.getLogger(__name__)

SCALES = (1, 3, 5)
DIM = 1024
SCHEMA_VERSION = 1
OFFICIAL_GALLERY = "demo/GeoSound_gallery_w_bingmap.h5"
OFFICIAL_CHECKPOINT = "bingmap_withmeta"
SYNTH_RATE = 44100
RAW_RATE = 32000
_BLOCK = 4096


def _decode(value: Any) -> str:
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
    """A lazily read retrieval gallery (see the module docstring for the schema).

    Open with ``Gallery(path)``; the file handle is opened on first use and shared across threads
    with a lock (h5py is not thread-safe). Embedding matrices are memory-mapped when the dataset is
    contiguous and uncompressed, otherwise read once in blocks (and converted to float32 once when stored in another dtype).
    """

    def __init__(self, path: str | os.PathLike[str], checkpoint: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"gallery file {self.path} does not exist; build one with `sat2sound gallery build`")
        self._lock = threading.RLock()
        self._h5: Any = None
        self._matrices: dict[str, np.ndarray] = {}
        self._norms: dict[str, np.ndarray] = {}
        self._overrides: dict[str, np.ndarray] = {}
        self._checkpoint_override = checkpoint
        self._validate()

    # ---- file access --------------------------------------------------------------------------
    @property
    def h5(self) -> Any:
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
        n = f["sample_id"].shape[0]
        for name in keys:
            if name.startswith(("text_embedding_zl", "audio_embedding")):
                shape = f[name].shape
                if len(shape) != 2 or shape[0] != n:
                    raise InputError(
                        f"{self.path}: dataset {name} has shape {shape}, expected ({n}, D) like sample_id"
                    )
            elif name.startswith(("llava_caption_zl", "audio_caption")) and f[name].shape[0] != n:
                raise InputError(f"{self.path}: dataset {name} has {f[name].shape[0]} rows, expected {n}")
        for s in SCALES:
            if (f"text_embedding_zl{s}" in keys) != (f"llava_caption_zl{s}" in keys):
                raise InputError(f"{self.path}: text_embedding_zl{s} and llava_caption_zl{s} must come together")
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

    # ---- rows ---------------------------------------------------------------------------------
    def _string(self, name: str, row: int) -> str:
        if not 0 <= row < self.rows:
            raise InputError(f"row {row} is outside this gallery (0 … {self.rows - 1})")
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
    def _audio_dataset(self, name: str, row: int, default_rate: int) -> tuple[np.ndarray, int] | None:
        with self._lock:
            if name not in self.h5:
                return None
            ds = self.h5[name]
            raw = ds[row]
            rate = int(ds.attrs.get("sample_rate", default_rate))
            channels = int(ds.attrs.get("channels", 1))
        encoded = _encoded_bytes(raw)
        if encoded is not None:  # a whole audio file stored per row (wav/flac/ogg bytes)
            if not encoded:
                return None
            decoded, file_rate = _decode_audio_file(encoded, f"{name}[{row}]")
            return (decoded, file_rate) if decoded.size and np.any(decoded) else None
        data = np.asarray(raw, dtype=np.float32)
        if data.size == 0 or not np.any(data):
            return None
        if data.ndim == 1 and channels > 1:
            data = data.reshape(channels, -1)
        return data, rate

    def audio(self, row: int, scale: int | None = None) -> tuple[np.ndarray, int] | None:
        """Playable audio for a row: the pre-synthesised clip for ``scale`` when present, else the raw
        recording; (samples (T,) or (C, T) float32, sample rate) or None when the row has none."""
        if not 0 <= row < self.rows:
            raise InputError(f"row {row} is outside this gallery (0 … {self.rows - 1})")
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
    def fingerprint(self) -> str:
        st = self.path.stat()
        key = f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def for_checkpoint(
        self,
        model: Any,
        checkpoint: str,
        cache_dir: Path | None = None,
        progress: ProgressCallback | None = None,
        batch_size: int = 32,
    ) -> Gallery:
        """This gallery with embeddings from ``model`` (named ``checkpoint``).

        Returns ``self`` when the file's embeddings already belong to ``checkpoint``. Otherwise the
        captions go through ``model.encode_text`` and the raw audio through ``log_mel`` +
        ``model.encode_audio``; results are cached as ``.npy`` (atomic writes) and memory-mapped.
        """
        if checkpoint == self.checkpoint:
            return self
        if cache_dir is None:
            from sat2sound_core.common.settings import get_settings

            cache_dir = get_settings().cache_dir("galleries")
        folder = Path(cache_dir) / self.fingerprint() / _safe_name(checkpoint)
        folder.mkdir(parents=True, exist_ok=True)
        other = Gallery(self.path, checkpoint=checkpoint)
        names = [f"text_embedding_zl{s}" for s in self.scales]
        if "audio_embedding" in self.h5:
            names.append("audio_embedding")
        for i, name in enumerate(names):
            target = folder / f"{name}.npy"
            if not target.is_file():
                report(progress, i, len(names), f"embedding {name} with {checkpoint}")
                if name == "audio_embedding":
                    mat = self._recompute_audio(model, batch_size)
                else:
                    scale = int(name.rsplit("zl", 1)[1])
                    texts = self.strings(f"llava_caption_zl{scale}")
                    mat = encode_texts(model, texts, batch_size)
                _atomic_save_npy(target, mat)
            other._overrides[name] = np.load(target, mmap_mode="r")
        report(progress, len(names), len(names), "gallery embeddings ready")
        return other

    def _recompute_audio(self, model: Any, batch_size: int) -> np.ndarray:
        out = np.zeros((self.rows, _model_dim(model)), dtype=np.float32)
        if "audio_raw" not in self.h5:
            log.warning("gallery %s has no raw audio; audio embeddings for this checkpoint are empty", self.path)
            return out
        rows = [r for r in range(self.rows) if self._audio_dataset("audio_raw", r, RAW_RATE) is not None]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            mels = []
            for r in chunk:
                got = self._audio_dataset("audio_raw", r, RAW_RATE)
                assert got is not None
                mels.append(_mel(got[0], got[1]))
            out[chunk] = encode_mels(model, mels)
        return out


def _encoded_bytes(raw: Any) -> bytes | None:
    """The bytes of an encoded audio file stored in one HDF5 cell, or None for plain samples."""
    if isinstance(raw, bytes | np.bytes_):
        return bytes(raw)
    if isinstance(raw, np.void):
        return raw.tobytes()
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8:
        return raw.tobytes()
    return None


def _decode_audio_file(data: bytes, what: str) -> tuple[np.ndarray, int]:
    import io

    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors vary by format
        raise InputError(f"gallery audio {what} cannot be decoded ({exc})") from None
    return np.ascontiguousarray(samples.T if samples.shape[1] > 1 else samples[:, 0]), int(rate)


def _model_dim(model: Any) -> int:
    return int(getattr(getattr(model, "config", None), "codebook_dim", DIM))


def encode_texts(model: Any, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """(N, D) float32 text-path embeddings of ``texts`` with ``model.encode_text``, batched."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = model.encode_text(list(texts[start : start + batch_size]))
            rows.append(enc.embedding.float().cpu().numpy())
    return np.concatenate(rows, axis=0).astype(np.float32) if rows else np.zeros((0, _model_dim(model)), np.float32)


def encode_mels(model: Any, mels: Sequence[Any]) -> np.ndarray:
    """(N, D) float32 audio-path embeddings of a list of (1001, 64) log-mels."""
    import torch

    with torch.inference_mode():
        batch = torch.stack([torch.as_tensor(m, dtype=torch.float32) for m in mels])
        enc = model.encode_audio(batch)
        return np.asarray(enc.embedding.float().cpu().numpy(), dtype=np.float32)


def _mel(samples: np.ndarray, rate: int) -> Any:
    from sat2sound_core import log_mel

    return log_mel(samples, rate)


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:120]


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array, dtype=np.float32))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------
# writing


@dataclass
class GalleryRow:
    """One row to write: captions per scale, optional audio (samples, rate) and precomputed embeddings."""

    sample_id: str
    captions: dict[int, str]
    audio_caption: str = ""
    audio: tuple[np.ndarray, int] | None = None


def write_gallery(
    path: str | os.PathLike[str],
    sample_ids: Sequence[str],
    captions: Mapping[int, Sequence[str]],
    text_embeddings: Mapping[int, np.ndarray],
    audio_captions: Sequence[str] | None = None,
    audio_embeddings: np.ndarray | None = None,
    raw_audio: Sequence[np.ndarray | None] | None = None,
    raw_rate: int = RAW_RATE,
    synth_audio: dict[int, Sequence[np.ndarray | None]] | None = None,
    checkpoint: str = OFFICIAL_CHECKPOINT,
) -> Path:
    """Write a gallery file in the schema above, atomically (temp file in the same folder + rename).

    Embeddings are stored uncompressed and contiguous so readers can memory-map them; audio rows
    are variable-length float32 (mono; ``sample_rate`` attribute on the dataset).
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        str_t = h5py.string_dtype("utf-8")
        with h5py.File(tmp, "w") as f:
            f.attrs["checkpoint"] = checkpoint
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["created_by"] = "sat2sound-map"
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_gallery_csv(csv_path: str | os.PathLike[str]) -> list[GalleryRow]:
    """Rows of a user gallery CSV.

    Columns (header required): ``caption`` (required: the place's soundscape caption, used for every
    scale unless ``caption_zl1``/``caption_zl3``/``caption_zl5`` give one per scale), ``audio``
    (optional: path to a wav/flac/ogg/mp3 file, relative to the CSV), ``audio_caption`` (optional,
    default: the caption), ``sample_id`` (optional, default: row number).
    """
    from sat2sound_core import load_audio

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(f"CSV file {csv_path} does not exist")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        if "caption" not in fields and not all(f"caption_zl{s}" in fields for s in SCALES):
            raise InputError(
                f"{csv_path}: needs a 'caption' column (or caption_zl1, caption_zl3, caption_zl5); "
                f"found columns: {', '.join(fields) or '(none)'}"
            )
        rows: list[GalleryRow] = []
        for i, raw in enumerate(reader):
            rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            base = rec.get("caption", "")
            caps = {s: rec.get(f"caption_zl{s}") or base for s in SCALES}
            if not all(caps.values()):
                raise InputError(f"{csv_path}: row {i + 2} has an empty caption")
            audio = None
            if rec.get("audio"):
                audio_path = (csv_path.parent / rec["audio"]).resolve()
                if not audio_path.is_file():
                    raise InputError(f"{csv_path}: row {i + 2}: audio file {audio_path} does not exist")
                audio = load_audio(str(audio_path))
            rows.append(
                GalleryRow(
                    sample_id=rec.get("sample_id") or f"row-{i}",
                    captions=caps,
                    audio_caption=rec.get("audio_caption") or base or caps[1],
                    audio=_as_samples_rate(audio) if audio is not None else None,
                )
            )
    if not rows:
        raise InputError(f"{csv_path} has no rows")
    return rows


def _as_samples_rate(audio: Any) -> tuple[np.ndarray, int]:
    """Normalise what ``load_audio`` returns ((samples, rate) tuple or an object) to (mono, rate)."""
    if isinstance(audio, tuple):
        samples, rate = audio
    else:
        samples = getattr(audio, "samples", getattr(audio, "waveform", None))
        rate = getattr(audio, "sample_rate", getattr(audio, "sr", None))
    arr = np.asarray(samples.numpy() if hasattr(samples, "numpy") else samples, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=0 if arr.shape[0] < arr.shape[1] else 1)
    return arr, int(rate)  # type: ignore[arg-type]


def build_gallery(
    csv_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    model: Any,
    checkpoint: str,
    progress: ProgressCallback | None = None,
    batch_size: int = 16,
) -> Path:
    """Build a gallery from a user CSV (see :func:`read_gallery_csv`) with ``model``'s text/audio path."""
    rows = read_gallery_csv(csv_path)
    n = len(rows)
    total = 3 + 1
    report(progress, 0, total, "captions")
    captions = {s: [r.captions[s] for r in rows] for s in SCALES}
    text: dict[int, np.ndarray] = {}
    for i, s in enumerate(SCALES):
        if i > 0 and captions[s] == captions[SCALES[0]]:
            text[s] = text[SCALES[0]]
        else:
            text[s] = encode_texts(model, captions[s], batch_size)
        report(progress, i + 1, total, f"captions zl{s}")
    audio_emb = np.zeros((n, _model_dim(model)), dtype=np.float32)
    raw: list[np.ndarray | None] = []
    with_audio = [i for i, r in enumerate(rows) if r.audio is not None]
    for start in range(0, len(with_audio), batch_size):
        chunk = with_audio[start : start + batch_size]
        mels = []
        for i in chunk:
            audio = rows[i].audio
            assert audio is not None
            mels.append(_mel(audio[0], audio[1]))
        audio_emb[chunk] = encode_mels(model, mels)
    for r in rows:
        raw.append(None if r.audio is None else _resample(r.audio[0], r.audio[1], RAW_RATE))
    report(progress, total, total, "writing")
    return write_gallery(
        out_path,
        sample_ids=[r.sample_id for r in rows],
        captions=captions,
        text_embeddings=text,
        audio_captions=[r.audio_caption for r in rows],
        audio_embeddings=audio_emb if with_audio else None,
        raw_audio=raw if with_audio else None,
        raw_rate=RAW_RATE,
        checkpoint=checkpoint,
    )


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.asarray(samples, np.float32)
    import soxr

    return np.asarray(soxr.resample(np.asarray(samples, np.float32), rate, target), np.float32)


# --------------------------------------------------------------------------------------------------
# locating


def official_gallery_path(progress: ProgressCallback | None = None) -> Path:
    """Local path of the official demo gallery, downloading it from the checkpoint repo when needed."""
    from sat2sound_core.common.settings import get_settings

    settings = get_settings()
    local = settings.weights / OFFICIAL_GALLERY
    if local.is_file():
        return local
    flat = settings.weights / Path(OFFICIAL_GALLERY).name
    if flat.is_file():
        return flat
    if settings.is_offline:
        raise DownloadError(
            f"the demo gallery {OFFICIAL_GALLERY} is not at {local} and downloads are off "
            f"(SAT2SOUND_OFFLINE/HF_HUB_OFFLINE); put the file there or set SAT2SOUND_GALLERY to a gallery file"
        )
    try:
        from huggingface_hub import hf_hub_download

        report(progress, 0, 1, f"downloading {OFFICIAL_GALLERY}")
        got = hf_hub_download(settings.hf_repo, OFFICIAL_GALLERY, local_dir=str(settings.weights))
        report(progress, 1, 1, "downloaded")
        return Path(got)
    except Exception as exc:  # network, auth, missing file
        raise DownloadError(
            f"could not download {OFFICIAL_GALLERY} from {settings.hf_repo}: {exc}. "
            f"Download it by hand to {local} or set SAT2SOUND_GALLERY."
        ) from None


def resolve_gallery(spec: str | os.PathLike[str] | Gallery | None = None) -> Gallery:
    """A :class:`Gallery` from an object, a path, ``"official"`` or None (``SAT2SOUND_GALLERY`` or the
    official demo gallery)."""
    if isinstance(spec, Gallery):
        return spec
    if spec is None or str(spec) == "":
        from sat2sound_core.common.settings import get_settings

        spec = get_settings().gallery or "official"
    if str(spec) == "official":
        return Gallery(official_gallery_path())
    return Gallery(Path(spec).expanduser())
