"""``fetch_chip``: the training-geometry source image around a point, from any provider.

Tile sources are mosaicked at the zoom the geometry needs: ``bingmap`` straight from zoom-18 pixels (no
resampling), ``sentinel`` and ``googleEarth`` warped (``rasterio.warp.reproject``, bilinear) from the
smallest zoom at least as fine as the target. The warp is done with both grids shifted east-west so the
point sits at longitude 0; web-mercator x is linear in longitude, so this is exact and lets windows cross
the antimeridian without GDAL wrapping them. Local rasters are warped onto the same grids.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.warp import Resampling, reproject

from tiles.chip import Chip
from tiles.config import get_config
from tiles.errors import NoImageryError, ProviderError
from tiles.fetcher import TileFetcher, default_fetcher
from tiles.geometry import (
    BING_ZOOM,
    CRS_3857,
    GEOMETRIES,
    Grid,
    bing_window,
    geometry_spec,
    source_zoom,
    target_grid,
)
from tiles.local import read_to_grid
from tiles.mercator import (
    ORIGIN,
    ground_resolution,
    lonlat_to_xy,
    mercator_resolution,
    validate_point,
    xy_to_lonlat,
)
from tiles.mosaic import assemble
from tiles.providers import DEFAULT_PROVIDER, LocalRasterProvider, Provider, TileSource, get_provider

log = logging.getLogger(__name__)
_MAX_UPSAMPLE = 2.0  # refuse sources more than 2x coarser than the training resolution
_WARP_THREADS = max(1, min(4, os.cpu_count() or 1))


def resolve_provider(provider: str | Path | Provider | None, geometry: str) -> Provider:
    """The provider to use for ``geometry``: ``provider`` resolved, or the geometry's default."""
    if provider is not None:
        return get_provider(provider)
    default = DEFAULT_PROVIDER[geometry]
    if default is not None:
        return get_provider(default)
    configured = get_config().googleearth_source
    if configured:
        return get_provider(configured)
    raise ProviderError(
        "googleEarth (SoundingEarth) imagery has no free default provider. Pass provider="
        "tiles.LocalProvider('your.tif' or a folder or .mbtiles) or tiles.XYZProvider(template, attribution, "
        "max_zoom>=19), or set SAT2SOUND_GOOGLEEARTH_SOURCE to a file, folder or http(s) {z}/{x}/{y} template."
    )


def _zoom_offset(source: TileSource) -> int:
    return int(round(math.log2(source.tile_size / 256)))


def _bing_from_tiles(source: TileSource, lat: float, lon: float, fetcher: TileFetcher) -> tuple[np.ndarray, list[str]]:
    offset = _zoom_offset(source)
    if source.max_zoom + offset < BING_ZOOM:
        z = source.max_zoom + offset
        raise ProviderError(
            f"{source.name} has imagery only down to zoom {z} ({ground_resolution(z, lat):.1f} m/px here), coarser "
            f"than bingmap training imagery (zoom {BING_ZOOM}, {ground_resolution(BING_ZOOM, lat):.2f} m/px). Use "
            "esri-world-imagery, azure-maps-imagery, a high-resolution XYZ source or a local file."
        )
    size = GEOMETRIES["bingmap"].size
    left, top = bing_window(lat, lon, size)
    image, notes = assemble(source, fetcher, BING_ZOOM - offset, left, top, size, size)
    return image, [f"native web-mercator zoom {BING_ZOOM} pixels, no resampling", *notes]


def _lonlat_bounds(grid: Grid) -> tuple[float, float, float, float]:
    left, bottom, right, top = grid.bounds
    if grid.crs.to_epsg() == 4326:
        return left, bottom, right, top
    w, s = xy_to_lonlat(left, bottom)
    e, n = xy_to_lonlat(right, top)
    return w, s, e, n


def _warp_from_tiles(
    source: TileSource, grid: Grid, lat: float, lon: float, fetcher: TileFetcher
) -> tuple[np.ndarray, list[str]]:
    offset = _zoom_offset(source)
    z256 = source_zoom(grid.ground_resolution, lat, source.max_zoom + offset)
    z = max(z256 - offset, source.min_zoom)
    z256 = z + offset
    src_gsd = ground_resolution(z256, lat)
    if src_gsd > grid.ground_resolution * _MAX_UPSAMPLE:
        raise ProviderError(
            f"{source.name} goes only to zoom {source.max_zoom} ({src_gsd:.2f} m/px here), far coarser than the "
            f"{grid.ground_resolution:g} m/px this geometry was trained on; use a finer provider or a local file."
        )
    res = mercator_resolution(z, source.tile_size)
    w, s, e, n = _lonlat_bounds(grid)
    xw, yn = lonlat_to_xy(w, n)
    xe, ys = lonlat_to_xy(e, s)
    margin = 2  # bilinear needs neighbours outside the bbox
    left = math.floor((xw + ORIGIN) / res) - margin
    right = math.ceil((xe + ORIGIN) / res) + margin
    top = math.floor((ORIGIN - yn) / res) - margin
    bottom = math.ceil((ORIGIN - ys) / res) + margin
    mosaic, notes = assemble(source, fetcher, z, left, top, right - left, bottom - top)
    # Shift both grids so the point is at longitude 0 (exact: mercator x is linear in longitude).
    shift_deg = lon
    shift_m = ORIGIN * shift_deg / 180.0
    src_transform = Affine(res, 0.0, left * res - ORIGIN - shift_m, 0.0, -res, ORIGIN - top * res)
    shift_dst = shift_deg if grid.crs.to_epsg() == 4326 else shift_m
    dst_transform = Affine.translation(-shift_dst, 0.0) @ grid.transform
    out = np.zeros((3, grid.height, grid.width), dtype=np.uint8)
    reproject(
        source=np.ascontiguousarray(np.moveaxis(mosaic, -1, 0)),
        destination=out,
        src_transform=src_transform,
        src_crs=CRS_3857,
        dst_transform=dst_transform,
        dst_crs=grid.crs,
        resampling=Resampling.bilinear,
        num_threads=_WARP_THREADS,
    )
    note = f"warped (bilinear) from zoom {z256} tiles ({src_gsd:.2f} m/px here) to {grid.ground_resolution:g} m/px"
    if src_gsd > grid.ground_resolution * 1.001:
        note += " (upsampled: the source is coarser than the training imagery)"
    return np.ascontiguousarray(np.moveaxis(out, 0, -1)), [note, *notes]


def check_not_blank(image: np.ndarray, provider: Provider) -> None:
    """Raise :class:`NoImageryError` when the chip is a single uniform colour (±2 levels per channel)."""
    def spread(a: np.ndarray) -> np.ndarray:
        flat = a.reshape(-1, 3)
        out: np.ndarray = flat.max(axis=0).astype(int) - flat.min(axis=0).astype(int)
        return out

    if (spread(image[::16, ::16]) > 2).any():  # cheap answer for almost every real chip
        return
    flat = image.reshape(-1, 3)
    if (spread(image) <= 2).all():
        colour = tuple(int(v) for v in flat[0])
        raise NoImageryError(
            f"the chip from {provider.name} is blank (one uniform colour {colour}): the provider has no imagery "
            "here, or the place is featureless. Choose another point, provider or a local file."
        )


def fetch_chip(
    lat: float,
    lon: float,
    geometry: str,
    provider: str | Path | Provider | None = None,
    *,
    fetcher: TileFetcher | None = None,
) -> Chip:
    """The full training-size source image around (lat, lon) for ``geometry``, before the scale crop.

    ``geometry`` is ``"bingmap"`` (1500² zoom-18 web-mercator pixels, EPSG:3857), ``"sentinel"`` (1280²
    EPSG:4326, ±6400 m, 10 m/px) or ``"googleEarth"`` (1024², 0.2 m/px, EPSG:3857). ``provider`` is a
    registry name (:func:`tiles.list_providers`), a local path, or a provider object; by default Esri
    World Imagery for bingmap and EOX Sentinel-2 cloudless 2020 for sentinel (googleEarth needs a local
    file or configured provider). ``fetcher`` overrides retries, timeouts and pool size.
    """
    lat, lon = validate_point(lat, lon)
    spec = geometry_spec(geometry)
    source = resolve_provider(provider, spec.name)
    grid = target_grid(spec.name, lat, lon)
    if isinstance(source, LocalRasterProvider):
        image, notes = read_to_grid(source, grid, lat, lon)
    elif isinstance(source, TileSource):
        fetcher = fetcher or default_fetcher()
        if spec.name == "bingmap":
            image, notes = _bing_from_tiles(source, lat, lon, fetcher)
        else:
            image, notes = _warp_from_tiles(source, grid, lat, lon, fetcher)
        notes.append(f"cache: {source.effective_cache_policy(get_config())}")
    else:
        raise ProviderError(f"{source!r} is neither a tile source nor a local raster provider.")
    check_not_blank(image, source)
    if isinstance(source, TileSource) and fetcher is not None:
        st = fetcher.last_stats
        log.info(
            "%s chip at (%.5f, %.5f) from %s: %d tiles (memory %d, disk %d, network %d), fetched in %.2f s",
            spec.name, lat, lon, source.name, st.tiles, st.memory, st.disk, st.network, st.seconds,
        )
    if source.notes:
        notes.append(source.notes)
    return Chip(
        image=image,
        crs=grid.crs,
        transform=grid.transform,
        ground_resolution=grid.ground_resolution,
        provider=source.name,
        attribution=source.attribution,
        geometry=spec.name,
        center=(lat, lon),
        notes=tuple(notes),
    )
