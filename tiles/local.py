"""Reading local GeoTIFF/COG (any CRS) imagery onto a chip's exact grid with rasterio.

The point is first checked against each file's footprint; a file (or folder) that does not cover it
raises :class:`LocalSourceError` saying how far away the nearest coverage is, in km. The chosen file is
read through a ``WarpedVRT`` whose grid is the target grid (bilinear), so only the needed window is read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Geod
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from tiles.errors import LocalSourceError
from tiles.geometry import Grid
from tiles.providers import LocalRasterProvider

log = logging.getLogger(__name__)
_GEOD = Geod(ellps="WGS84")


def _open(path: Path) -> rasterio.io.DatasetReader:
    try:
        src = rasterio.open(path)
    except Exception as exc:
        raise LocalSourceError(
            f"cannot read {path} as imagery ({exc}). Use a GeoTIFF, COG or MBTiles file with a CRS."
        ) from None
    if src.crs is None:
        src.close()
        raise LocalSourceError(f"{path} has no coordinate reference system; georeference it (e.g. gdal_edit.py -a_srs).")
    return src


def _distance_km(lat: float, lon: float, box: tuple[float, float, float, float]) -> float:
    w, s, e, n = box
    clat = min(max(lat, s), n)
    clon = min(max(lon, w), e)
    _, _, metres = _GEOD.inv(lon, lat, clon, clat)
    return float(metres) / 1000.0


def _covers(src: rasterio.io.DatasetReader, lat: float, lon: float) -> bool:
    xs, ys = warp_transform("EPSG:4326", src.crs, [lon], [lat])
    left, bottom, right, top = src.bounds
    return bool(left <= xs[0] <= right and bottom <= ys[0] <= top)


def pick_file(provider: LocalRasterProvider, lat: float, lon: float) -> Path:
    """The first file of ``provider`` whose extent contains the point, or a clear error (with km off)."""
    nearest: tuple[float, Path] | None = None
    errors = []
    for path in provider.files:
        try:
            src = _open(path)
        except LocalSourceError as exc:
            if len(provider.files) == 1:
                raise
            errors.append(str(exc))
            continue
        with src:
            if _covers(src, lat, lon):
                return path
            box = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        km = _distance_km(lat, lon, box)
        if nearest is None or km < nearest[0]:
            nearest = (km, path)
    if nearest is None:
        raise LocalSourceError(f"no readable imagery in {provider.path}: {'; '.join(errors[:3])}")
    km, path = nearest
    raise LocalSourceError(
        f"local imagery {path.name} does not cover ({lat:.5f}, {lon:.5f}): its nearest edge is {km:.1f} km "
        "away. Use a file that covers the point or click inside the file's extent."
    )


def _band_indexes(src: rasterio.io.DatasetReader) -> list[int]:
    if src.count >= 3:
        interp = list(src.colorinterp)
        wanted = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if all(c in interp for c in wanted):
            return [interp.index(c) + 1 for c in wanted]
        return [1, 2, 3]
    return [1, 1, 1]


def _has_mask(src: rasterio.io.DatasetReader) -> bool:
    # Sources with nodata, an alpha band or an internal mask already tell the warper where data is;
    # for the others an alpha band is added so pixels outside the file come back masked.
    return src.nodata is not None or ColorInterp.alpha in src.colorinterp or any(
        MaskFlags.per_dataset in flags for flags in src.mask_flag_enums
    )


def _to_uint8(data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, str | None]:
    if data.dtype == np.uint8:
        return data, None
    values = data[:, valid] if valid.any() else data.reshape(data.shape[0], -1)
    lo, hi = np.percentile(values, [2, 98])
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    out = np.clip((data.astype(np.float64) - lo) * scale, 0, 255).round().astype(np.uint8)
    return out, f"{data.dtype} pixels stretched to 8 bit (2–98 % range {lo:g}..{hi:g})"


def read_to_grid(provider: LocalRasterProvider, grid: Grid, lat: float, lon: float) -> tuple[np.ndarray, list[str]]:
    """Pixels (H, W, 3) uint8 of the file covering (lat, lon), warped onto ``grid``; plus notes."""
    path = pick_file(provider, lat, lon)
    notes = [f"read from {path.name}, reprojected (bilinear) to {grid.crs.to_string()}"]
    with _open(path) as src:
        bands = _band_indexes(src)
        res = src.res
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling.bilinear,
            add_alpha=not _has_mask(src),
        ) as vrt:
            data = vrt.read(bands)
            mask = vrt.dataset_mask() > 0
    data, note = _to_uint8(data, mask)
    if note:
        notes.append(note)
    data = np.where(mask[None], data, 0).astype(np.uint8)
    coverage = float(mask.mean())
    if coverage < 0.999:
        notes.append(f"the file covers {coverage:.1%} of the chip; the rest is black")
    notes.append(f"source pixel size {res[0]:g} × {res[1]:g} in {path.name}'s CRS")
    return np.ascontiguousarray(np.moveaxis(data, 0, -1)), notes
