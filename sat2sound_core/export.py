"""Export: Cloud-Optimized GeoTIFF of heatmaps, PNG previews, WAV + JSON sidecars, caption CSV/JSON.

Every ``write_*`` function writes a temporary file in the destination folder and renames it into
place (:mod:`sat2sound_core.common.files`), so a failed export never leaves a partial file; unlike the
caches, an export never creates folders: a missing or read-only folder is an :class:`InputError`
naming the path. Every ``*_bytes`` function returns the same content in memory (for download buttons).

GeoTIFF layout (:func:`geotiff_bytes`, written by :func:`tiles.geotiff.write_raster`, the one raster
writer): one float32 band per heatmap on the chip's 14×14 patch grid (or upsampled with ``size=``),
band description = the query, band tags ``kind``, ``query`` and ``details``; optionally a last band
``concept_id`` holding each patch's top concept id; nodata NaN; the chip's CRS and transform; dataset
tags ``checkpoint``, ``provider``, ``attribution``, ``scale``, ``metadata`` (JSON), ``software`` and
``software_version``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np
from affine import Affine
from numpy.typing import ArrayLike

from sat2sound_core.common import files
from sat2sound_core.common.errors import InputError

if TYPE_CHECKING:
    from rasterio.crs import CRS

    from sat2sound_core.maps.concepts import ConceptMap
    from sat2sound_core.maps.heatmaps import Heatmap

SOFTWARE = "sat2sound-map"
#: most channels an exported clip may have (a 2-D array with more rows is read as (T, C))
MAX_CHANNELS = 8

#: what :func:`_jsonable` turns any value into (and what JSON tags and sidecars hold)
JSON: TypeAlias = "None | str | int | float | bool | list[JSON] | dict[str, JSON]"


class HitRow(Protocol):
    """A retrieved caption that can describe itself as one CSV/JSON row (:class:`~sat2sound_core.retrieval.Hit`)."""

    def as_dict(self) -> Mapping[str, object]: ...


Hits: TypeAlias = "Sequence[HitRow | Mapping[str, object]]"


def _version() -> str:
    from sat2sound_core import __version__

    return __version__


def _writable(path: str | os.PathLike[str]) -> Path:
    """``path`` when its folder exists and is writable and it is not a folder, else :class:`InputError`."""
    path = Path(path).expanduser()
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: folder {folder} is not writable (choose another path)")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder; give a file name")
    return path


@contextlib.contextmanager
def _reported(path: Path) -> Iterator[None]:
    """Turn an operating-system error while writing ``path`` into an :class:`InputError` naming it."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` for a temp file next to ``path``, then rename it to ``path``.

    The write itself is :func:`sat2sound_core.common.files.atomic_write`. A failure removes the temp
    file; a missing or read-only folder, or an OS error while writing, raises :class:`InputError`
    naming the path.
    """
    target = _writable(path)
    with _reported(target):
        return files.atomic_write(target, write)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (errors as in :func:`atomic_write`)."""
    target = _writable(path)
    with _reported(target):
        return files.write_bytes(target, data)


# --------------------------------------------------------------------------------------------------
# GeoTIFF


def _stack(
    heatmaps: Sequence[Heatmap], concept_map: ConceptMap | None, size: int | None
) -> tuple[np.ndarray, list[str], Affine, CRS]:
    from sat2sound_core.maps.render import upsample

    if not heatmaps and concept_map is None:
        raise InputError("nothing to export: give at least one heatmap or a concept map")
    first = heatmaps[0] if heatmaps else None
    if first is not None:
        crs, transform, n = first.crs, first.transform, first.values.shape[0]
    else:
        assert concept_map is not None  # one of the two, checked above
        crs, transform, n = concept_map.geometry.crs, concept_map.geometry.transform, concept_map.labels.shape[0]
    for h in heatmaps:
        if h.transform != transform or str(h.crs) != str(crs):
            raise InputError(f"heatmap {h.query!r} lies on another grid; export heatmaps of one chip together")
    if concept_map is not None and (concept_map.geometry.transform != transform):
        raise InputError("the concept map belongs to another chip than the heatmaps")
    bands, names = [], []
    for h in heatmaps:
        v = h.values.astype(np.float32)
        bands.append(upsample(v, size, size, smooth=True) if size else v)
        names.append(h.query)
    if concept_map is not None:
        lab = concept_map.labels.astype(np.float32)
        if size:
            idx = (np.arange(size) * lab.shape[0]) // size
            lab = lab[np.ix_(idx, idx)]
        bands.append(lab)
        names.append("concept_id")
    if size:
        transform = transform @ Affine.scale(n / size, n / size)
    return np.stack(bands).astype(np.float32), names, transform, crs


def _tags(
    chip: object, checkpoint: str, scale: int | None, metadata: object, extra: Mapping[str, object] | None
) -> dict[str, str]:
    tags = {
        "software": SOFTWARE,
        "software_version": _version(),
        "checkpoint": checkpoint or "",
        "provider": str(getattr(getattr(chip, "provider", None), "name", getattr(chip, "provider", "")) or ""),
        "attribution": str(getattr(chip, "attribution", "") or ""),
        "scale": "" if scale is None else str(scale),
        "metadata": json.dumps(_jsonable(metadata), sort_keys=True),
    }
    for k, v in (extra or {}).items():
        tags[str(k)] = v if isinstance(v, str) else json.dumps(_jsonable(v))
    return tags


def _band_tags(names: list[str], heatmaps: Sequence[Heatmap]) -> list[dict[str, str]]:
    out = []
    for i, _ in enumerate(names):
        if i < len(heatmaps):
            h = heatmaps[i]
            out.append({"query": h.query, "kind": h.kind, "details": json.dumps(_jsonable(h.details))})
        else:
            out.append({"query": "concept_id", "kind": "concept_id"})
    return out


def geotiff_bytes(
    heatmaps: Sequence[Heatmap],
    chip: object = None,
    concept_map: ConceptMap | None = None,
    checkpoint: str = "",
    scale: int | None = None,
    metadata: object = None,
    size: int | None = None,
    extra_tags: Mapping[str, object] | None = None,
) -> bytes:
    """The COG of :func:`write_geotiff` as bytes (see the module docstring for the layout).

    ``chip`` is whatever the heatmaps were computed on (a :class:`tiles.Chip`): its ``provider`` and
    ``attribution`` become tags.
    """
    from tiles.geotiff import write_raster

    if isinstance(heatmaps, (str, bytes)):  # a query where a list of heatmaps belongs
        raise InputError("nothing to export: give at least one heatmap or a concept map")
    heatmaps = list(heatmaps)
    data, names, transform, crs = _stack(heatmaps, concept_map, size)
    blob = write_raster(
        None, data, crs, transform,
        nodata=float("nan"),
        tags=_tags(chip, checkpoint, scale, metadata, extra_tags),
        band_descriptions=names,
        band_tags=_band_tags(names, heatmaps),
        driver="COG",
    )
    assert blob is not None  # no destination: the bytes come back
    return blob


def write_geotiff(
    path: str | os.PathLike[str],
    heatmaps: Sequence[Heatmap],
    chip: object = None,
    concept_map: ConceptMap | None = None,
    checkpoint: str = "",
    scale: int | None = None,
    metadata: object = None,
    size: int | None = None,
    extra_tags: Mapping[str, object] | None = None,
) -> Path:
    """Write heatmaps of one chip as a Cloud-Optimized GeoTIFF at ``path`` (atomically).

    ``size`` upsamples every band bilinearly to size×size pixels (the concept band by nearest);
    default: the 14×14 patch grid itself, one pixel per patch.
    """
    data = geotiff_bytes(heatmaps, chip, concept_map, checkpoint, scale, metadata, size, extra_tags)
    return write_bytes(path, data)


# --------------------------------------------------------------------------------------------------
# PNG, audio, captions


def heatmap_png_bytes(
    heatmap: Heatmap,
    size: int = 448,
    cmap: str = "soundscape",
    base: ArrayLike | None = None,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    opacity: float = 0.7,
    smooth: bool = True,
    alpha_ramp: float = 0.0,
) -> bytes:
    """PNG of one heatmap in the chip's own pixel grid; with ``base`` (the chip image), blended on it.

    The keywords after ``base`` are :func:`sat2sound_core.maps.render.heatmap_rgba`'s.
    """
    from PIL import Image

    from sat2sound_core.maps.render import blend, heatmap_rgba, png_bytes

    rgba = heatmap_rgba(heatmap, size=size, cmap=cmap, vmin=vmin, vmax=vmax, opacity=opacity, smooth=smooth,
                        mercator=False, alpha_ramp=alpha_ramp)
    if base is not None:
        img = Image.fromarray(np.asarray(base, dtype=np.uint8)[..., :3]).resize((size, size), Image.Resampling.BILINEAR)
        return png_bytes(blend(np.asarray(img), rgba))
    return png_bytes(rgba)


png_bytes = heatmap_png_bytes
"""Same as :func:`heatmap_png_bytes` (the name the engine API documents)."""


def write_png(
    path: str | os.PathLike[str], heatmap: Heatmap, size: int = 448, cmap: str = "soundscape",
    base: ArrayLike | None = None,
) -> Path:
    """Write :func:`heatmap_png_bytes` atomically."""
    return write_bytes(path, heatmap_png_bytes(heatmap, size=size, cmap=cmap, base=base))


def wav_bytes(samples: ArrayLike, sample_rate: int) -> bytes:
    """16-bit PCM WAV of float samples in [-1, 1] ((T,) or (C, T) with C ≤ :data:`MAX_CHANNELS`; a 2-D
    array with more rows than that is read as (T, C)). Non-finite samples are refused (they
    would become full-scale clicks); samples beyond ±1 are clipped."""
    import soundfile as sf

    arr = np.asarray(samples)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"audio samples must be numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2:
        if arr.shape[0] <= MAX_CHANNELS:
            arr = arr.T
        elif arr.shape[1] > MAX_CHANNELS:
            raise InputError(f"audio samples must be (T,) or (C, T) with at most {MAX_CHANNELS} channels, "
                             f"got shape {arr.shape}")
    elif arr.ndim != 1:
        raise InputError(f"audio samples must be (T,) or (C, T), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("no audio samples to write")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or not 0 < sample_rate <= 1_000_000:
        raise InputError(f"sample rate must be a positive integer in Hz, got {sample_rate!r}")
    if not np.isfinite(arr).all():
        raise InputError("the audio has NaN or infinite samples (damaged audio); it is not written")
    buf = io.BytesIO()
    sf.write(buf, np.clip(arr, -1.0, 1.0), int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def audio_sidecar(
    samples: ArrayLike, sample_rate: int, info: Mapping[str, object] | None = None
) -> dict[str, JSON]:
    """The JSON sidecar content of a clip: ``info`` plus sample rate, duration and software."""
    n = np.asarray(samples).shape[-1]
    extra = _jsonable(dict(info or {}))
    assert isinstance(extra, dict)
    return {"sample_rate": int(sample_rate), "duration_s": n / float(sample_rate), "software": SOFTWARE,
            "software_version": _version(), **extra}


def audio_sidecar_bytes(samples: ArrayLike, sample_rate: int, info: Mapping[str, object] | None = None) -> bytes:
    """:func:`audio_sidecar` as UTF-8 JSON bytes (for a download button next to :func:`wav_bytes`)."""
    return files.sidecar_bytes(audio_sidecar(samples, sample_rate, info))


def write_audio(
    path: str | os.PathLike[str], samples: ArrayLike, sample_rate: int, info: Mapping[str, object] | None = None
) -> tuple[Path, Path]:
    """Write ``path`` (.wav) and a JSON sidecar next to it (same stem, ``.json``) describing the clip
    (caption, source, checkpoint, …, plus sample rate and duration). Both atomic, through
    :func:`sat2sound_core.common.files.write_with_sidecar` (the writer :meth:`Audio.save
    <sat2sound_core.synthesis.Audio.save>` uses)."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        path = path.with_suffix(".wav")
    data = wav_bytes(samples, sample_rate)
    target = _writable(path)
    _writable(files.sidecar_path(target))
    with _reported(target):
        return files.write_with_sidecar(target, data, audio_sidecar(samples, sample_rate, info))


HIT_FIELDS = ("rank", "score", "caption", "row", "has_audio", "scale", "target", "sample_id", "audio_caption")


def _hit_row(hit: HitRow | Mapping[str, object]) -> dict[str, object]:
    return dict(hit) if isinstance(hit, Mapping) else dict(hit.as_dict())


def hits_csv_bytes(hits: Hits) -> bytes:
    """CSV (UTF-8, header) of retrieved captions."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HIT_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for h in hits:
        writer.writerow(_hit_row(h))
    return buf.getvalue().encode("utf-8")


def hits_json_bytes(hits: Hits, context: Mapping[str, object] | None = None) -> bytes:
    """JSON ``{"context": …, "hits": [...]}`` of retrieved captions."""
    rows = [_jsonable(_hit_row(h)) for h in hits]
    return json.dumps({"context": _jsonable(dict(context or {})), "hits": rows}, indent=2).encode("utf-8")


def write_hits(path: str | os.PathLike[str], hits: Hits, context: Mapping[str, object] | None = None) -> Path:
    """Write hits as CSV or JSON, chosen by the file extension (.csv / .json)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_bytes(path, hits_csv_bytes(hits))
    if suffix == ".json":
        return write_bytes(path, hits_json_bytes(hits, context))
    raise InputError(f"unsupported captions format {suffix or '(none)'} for {path}; use .csv or .json")


def _jsonable(value: object) -> JSON:
    """``value`` as JSON data: dataclasses and objects become dicts, arrays lists, anything else its str."""
    from dataclasses import asdict, is_dataclass

    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if hasattr(value, "__dict__"):
        return {k: _jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)
