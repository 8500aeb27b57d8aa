"""Export: Cloud-Optimized GeoTIFF of heatmaps, PNG previews, WAV + JSON sidecars, caption CSV/JSON.

Every ``write_*`` function writes a temporary file in the destination folder and renames it into
place, so a failed export never leaves a partial file; every ``*_bytes`` function returns the same
content in memory (for download buttons).

GeoTIFF layout (:func:`geotiff_bytes`): one float32 band per heatmap on the chip's 14×14 patch grid
(or upsampled with ``size=``), band description = the query, band tags ``kind`` and ``query``;
optionally a last band ``concept_id`` holding each patch's top concept id; nodata NaN; the chip's
CRS and transform; dataset tags ``checkpoint``, ``provider``, ``attribution``, ``scale``,
``metadata`` (JSON), ``software`` and ``software_version``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from sat2sound_core.common.errors import InputError

SOFTWARE = "sat2sound-map"


def _version() -> str:
    from sat2sound_core import __version__

    return __version__


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` for a temp file next to ``path``, then rename it to ``path``.

    A failure removes the temp file and raises :class:`InputError` naming the path when the folder
    is missing or not writable.
    """
    path = Path(path).expanduser()
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: folder {folder} is not writable (choose another path)")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=path.suffix or ".tmp")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    def _write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, _write)


# --------------------------------------------------------------------------------------------------
# GeoTIFF


def _stack(heatmaps: Sequence[Any], concept_map: Any, size: int | None) -> tuple[np.ndarray, list[str], Affine, Any]:
    from sat2sound_core.maps.render import upsample

    if isinstance(heatmaps, (str, bytes)) or not heatmaps and concept_map is None:
        raise InputError("nothing to export: give at least one heatmap or a concept map")
    first = heatmaps[0] if heatmaps else None
    geo = first if first is not None else concept_map.geometry
    crs, transform = geo.crs, geo.transform
    for h in heatmaps:
        if h.transform != transform or str(h.crs) != str(crs):
            raise InputError(f"heatmap {h.query!r} lies on another grid; export heatmaps of one chip together")
    if concept_map is not None and (concept_map.geometry.transform != transform):
        raise InputError("the concept map belongs to another chip than the heatmaps")
    n = first.values.shape[0] if first is not None else concept_map.labels.shape[0]
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


def _geotiff_profile(data: np.ndarray, transform: Affine, crs: Any) -> dict[str, Any]:
    count, height, width = data.shape
    return {
        "driver": "COG",
        "width": width,
        "height": height,
        "count": count,
        "dtype": "float32",
        "crs": crs,
        "transform": transform,
        "nodata": float("nan"),
        "compress": "DEFLATE",
        "predictor": 3,
        "blocksize": 256,
        "overview_resampling": "average",
        "BIGTIFF": "IF_SAFER",
    }


def _tags(chip: Any, checkpoint: str, scale: int | None, metadata: Any, extra: dict[str, Any] | None) -> dict[str, str]:
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


def _write_dataset(dst: Any, data: np.ndarray, names: list[str], heatmaps: Sequence[Any], tags: dict[str, str]) -> None:
    dst.write(data)
    for i, name in enumerate(names, start=1):
        dst.set_band_description(i, name)
        if i <= len(heatmaps):
            h = heatmaps[i - 1]
            dst.update_tags(i, query=h.query, kind=h.kind, details=json.dumps(_jsonable(h.details)))
        else:
            dst.update_tags(i, query="concept_id", kind="concept_id")
    dst.update_tags(**tags)


def geotiff_bytes(
    heatmaps: Sequence[Any],
    chip: Any = None,
    concept_map: Any = None,
    checkpoint: str = "",
    scale: int | None = None,
    metadata: Any = None,
    size: int | None = None,
    extra_tags: dict[str, Any] | None = None,
) -> bytes:
    """The COG of :func:`write_geotiff` as bytes (see the module docstring for the layout)."""
    from rasterio.io import MemoryFile

    heatmaps = list(heatmaps)
    data, names, transform, crs = _stack(heatmaps, concept_map, size)
    tags = _tags(chip, checkpoint, scale, metadata, extra_tags)
    with MemoryFile() as mem:
        with mem.open(**_geotiff_profile(data, transform, crs)) as dst:
            _write_dataset(dst, data, names, heatmaps, tags)
        return bytes(mem.read())


def write_geotiff(
    path: str | os.PathLike[str],
    heatmaps: Sequence[Any],
    chip: Any = None,
    concept_map: Any = None,
    checkpoint: str = "",
    scale: int | None = None,
    metadata: Any = None,
    size: int | None = None,
    extra_tags: dict[str, Any] | None = None,
) -> Path:
    """Write heatmaps of one chip as a Cloud-Optimized GeoTIFF at ``path`` (atomically).

    ``size`` upsamples every band bilinearly to size×size pixels (the concept band by nearest);
    default: the 14×14 patch grid itself, one pixel per patch.
    """
    data = geotiff_bytes(heatmaps, chip, concept_map, checkpoint, scale, metadata, size, extra_tags)
    return write_bytes(path, data)


# --------------------------------------------------------------------------------------------------
# PNG, audio, captions


def heatmap_png_bytes(heatmap: Any, size: int = 448, cmap: str = "soundscape", base: np.ndarray | None = None, **kw: Any) -> bytes:
    """PNG of one heatmap in the chip's own pixel grid; with ``base`` (the chip image), blended on it."""
    from PIL import Image

    from sat2sound_core.maps.render import blend, heatmap_rgba, png_bytes

    rgba = heatmap_rgba(heatmap, size=size, cmap=cmap, mercator=False, **kw)
    if base is not None:
        img = Image.fromarray(np.asarray(base, dtype=np.uint8)[..., :3]).resize((size, size), Image.Resampling.BILINEAR)
        return png_bytes(blend(np.asarray(img), rgba))
    return png_bytes(rgba)


def png_bytes(heatmap: Any, **kw: Any) -> bytes:
    """Same as :func:`heatmap_png_bytes` (the name the engine API documents)."""
    return heatmap_png_bytes(heatmap, **kw)


def write_png(path: str | os.PathLike[str], heatmap: Any, **kw: Any) -> Path:
    """Write :func:`heatmap_png_bytes` atomically."""
    return write_bytes(path, heatmap_png_bytes(heatmap, **kw))


def wav_bytes(samples: Any, sample_rate: int) -> bytes:
    """16-bit PCM WAV of float samples in [-1, 1] ((T,) or (C, T))."""
    import soundfile as sf

    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.T if arr.shape[0] < arr.shape[1] else arr
    if arr.size == 0:
        raise InputError("no audio samples to write")
    if sample_rate <= 0:
        raise InputError(f"sample rate must be positive, got {sample_rate}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(arr, -1.0, 1.0), int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def audio_sidecar(samples: Any, sample_rate: int, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON sidecar content of a clip: ``info`` plus sample rate, duration and software."""
    n = np.asarray(samples).shape[-1]
    return {"sample_rate": int(sample_rate), "duration_s": n / float(sample_rate), "software": SOFTWARE,
            "software_version": _version(), **_jsonable(info or {})}


def audio_sidecar_bytes(samples: Any, sample_rate: int, info: dict[str, Any] | None = None) -> bytes:
    """:func:`audio_sidecar` as UTF-8 JSON bytes (for a download button next to :func:`wav_bytes`)."""
    return json.dumps(audio_sidecar(samples, sample_rate, info), indent=2, sort_keys=True).encode()


def write_audio(path: str | os.PathLike[str], samples: Any, sample_rate: int, info: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``path`` (.wav) and a JSON sidecar next to it (same stem, ``.json``) describing the clip
    (caption, source, checkpoint, …, plus sample rate and duration). Both atomic."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        path = path.with_suffix(".wav")
    data = wav_bytes(samples, sample_rate)
    wav = write_bytes(path, data)
    side = write_bytes(path.with_suffix(".json"), audio_sidecar_bytes(samples, sample_rate, info))
    return wav, side


HIT_FIELDS = ("rank", "score", "caption", "row", "has_audio", "scale", "target", "sample_id", "audio_caption")


def hits_csv_bytes(hits: Sequence[Any]) -> bytes:
    """CSV (UTF-8, header) of retrieved captions."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HIT_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for h in hits:
        writer.writerow(h.as_dict() if hasattr(h, "as_dict") else dict(h))
    return buf.getvalue().encode("utf-8")


def hits_json_bytes(hits: Sequence[Any], context: dict[str, Any] | None = None) -> bytes:
    """JSON ``{"context": …, "hits": [...]}`` of retrieved captions."""
    rows = [h.as_dict() if hasattr(h, "as_dict") else dict(h) for h in hits]
    return json.dumps({"context": _jsonable(context or {}), "hits": rows}, indent=2).encode("utf-8")


def write_hits(path: str | os.PathLike[str], hits: Sequence[Any], context: dict[str, Any] | None = None) -> Path:
    """Write hits as CSV or JSON, chosen by the file extension (.csv / .json)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_bytes(path, hits_csv_bytes(hits))
    if suffix == ".json":
        return write_bytes(path, hits_json_bytes(hits, context))
    raise InputError(f"unsupported captions format {suffix or '(none)'} for {path}; use .csv or .json")


def _jsonable(value: Any) -> Any:
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
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__dict__"):
        return {k: _jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)
