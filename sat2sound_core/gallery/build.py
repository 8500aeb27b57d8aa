"""Building a gallery from a user CSV: read the rows, embed them with a model, write the file."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.gallery.embed import encode_mels, encode_texts, mel, model_dim
from sat2sound_core.gallery.schema import RAW_RATE, SCALES
from sat2sound_core.gallery.write import write_gallery

if TYPE_CHECKING:
    from sat2sound_core.model.sat2sound import Sat2Sound


#: csv's default field_size_limit: a longer field (a caption over 128 KB) is refused with a clear error
MAX_FIELD_BYTES = 131072
#: longest recording one gallery row holds (stored whole, at 32 kHz, for re-embedding)
MAX_ROW_SECONDS = 600


@dataclass
class GalleryRow:
    """One row to write: captions per scale, optional audio (mono samples, rate)."""

    sample_id: str
    captions: dict[int, str]
    audio_caption: str = ""
    audio: tuple[np.ndarray, int] | None = None


def read_gallery_csv(csv_path: str | os.PathLike[str]) -> list[GalleryRow]:
    """Rows of a user gallery CSV.

    Columns (header required): ``caption`` (required: the place's soundscape caption, used for every
    scale unless ``caption_zl1``/``caption_zl3``/``caption_zl5`` give one per scale), ``audio``
    (optional: path to a wav/flac/ogg/mp3 file, relative to the CSV), ``audio_caption`` (optional,
    default: the caption), ``sample_id`` (optional, default: row number).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(f"CSV file {csv_path} does not exist")
    text = _csv_text(csv_path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[GalleryRow] = []
    try:
        fields = [c.strip() for c in (reader.fieldnames or [])]
        if "caption" not in fields and not all(f"caption_zl{s}" in fields for s in SCALES):
            raise InputError(
                f"{csv_path}: needs a 'caption' column (or caption_zl1, caption_zl3, caption_zl5); "
                f"found columns: {', '.join(fields) or '(none)'}"
            )
        for i, raw in enumerate(reader):
            extra = raw.pop(None, None)  # DictReader keeps surplus fields under the key None
            if extra and any(str(v).strip() for v in extra):
                raise InputError(
                    f"{csv_path}: row {reader.line_num} has more fields than the header "
                    f"({len(fields)}); quote captions that contain commas"
                )
            rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if isinstance(v, str | None)}
            base = rec.get("caption", "")
            caps = {s: rec.get(f"caption_zl{s}") or base for s in SCALES}
            if not all(caps.values()):
                raise InputError(f"{csv_path}: row {i + 2} has an empty caption")
            audio = None
            if rec.get("audio"):
                audio_path = (csv_path.parent / rec["audio"]).resolve()
                if not audio_path.is_file():
                    raise InputError(f"{csv_path}: row {i + 2}: audio file {audio_path} does not exist")
                audio = _read_row_audio(audio_path, f"{csv_path}: row {i + 2}")
            rows.append(
                GalleryRow(
                    sample_id=rec.get("sample_id") or f"row-{i}",
                    captions=caps,
                    audio_caption=rec.get("audio_caption") or base or caps[1],
                    audio=audio,
                )
            )
    except csv.Error as exc:  # a field over csv.field_size_limit (128 KB), a NUL byte, a stray quote …
        raise InputError(
            f"{csv_path}: line {reader.line_num} cannot be read as CSV ({exc}); captions are limited to "
            f"{MAX_FIELD_BYTES // 1024} KB and fields must not hold NUL bytes"
        ) from None
    if not rows:
        raise InputError(f"{csv_path} has no rows")
    return rows


def _csv_text(csv_path: Path) -> str:
    """The CSV's text: UTF-8, with or without the byte-order mark Excel writes (``\\ufeffcaption``)."""
    data = csv_path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{csv_path} is not UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r}, e.g. Latin-1); "
            "save it as UTF-8 (Excel: 'CSV UTF-8', or `iconv -f latin1 -t utf-8`)"
        ) from None


def _read_row_audio(path: Path, where: str) -> tuple[np.ndarray, int]:
    """A row's recording as mono float32 samples at its own rate (channels averaged block by block, so
    a many-channel file never lies in memory whole), at most :data:`MAX_ROW_SECONDS` long."""
    from sat2sound_core.preprocess.audio import open_audio

    audio = open_audio(path)
    if audio.duration > MAX_ROW_SECONDS:
        raise InputError(
            f"{where}: {path.name} is {audio.duration / 60:.1f} min long; gallery rows hold at most "
            f"{MAX_ROW_SECONDS // 60} min of audio; trim it (e.g. `ffmpeg -i in.flac -t 60 out.flac`)"
        )
    samples = audio.read_mono(0, audio.frames)
    audio.check_heard()
    return samples.numpy(), audio.sample_rate


def build_gallery(
    csv_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    model: Sat2Sound,
    checkpoint: str,
    progress: ProgressCallback | None = None,
    batch_size: int = 16,
) -> Path:
    """Build a gallery from a user CSV (see :func:`read_gallery_csv`) with ``model``'s text/audio path."""
    rows = read_gallery_csv(csv_path)
    n = len(rows)
    total = len(SCALES) + 1
    report(progress, 0, total, "captions")
    captions = {s: [r.captions[s] for r in rows] for s in SCALES}
    text: dict[int, np.ndarray] = {}
    for i, s in enumerate(SCALES):
        if i > 0 and captions[s] == captions[SCALES[0]]:
            text[s] = text[SCALES[0]]
        else:
            text[s] = encode_texts(model, captions[s], batch_size)
        report(progress, i + 1, total, f"captions zl{s}")
    audio_emb = np.zeros((n, model_dim(model)), dtype=np.float32)
    with_audio = [(i, audio) for i, r in enumerate(rows) if (audio := r.audio) is not None]
    for start in range(0, len(with_audio), batch_size):
        chunk = with_audio[start : start + batch_size]
        audio_emb[[i for i, _ in chunk]] = encode_mels(model, [mel(*audio) for _, audio in chunk])
    raw = [None if r.audio is None else _resample(r.audio[0], r.audio[1], RAW_RATE) for r in rows]
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
