"""The georeferenced image chip every later step derives its geometry from.

A :class:`Chip` holds pixels plus CRS, affine transform, ground resolution, provider and attribution.
``crop(scale)`` reproduces the model transform's centre crop exactly (torchvision ``CenterCrop``:
offset ``round((W - c) / 2)``, zero padding when the crop is larger than the chip) and returns a chip
with the matching transform. ``patch_grid`` and ``footprints`` give shapely polygons in lon/lat
(x = longitude, y = latitude) for drawing on maps and placing heatmaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import Polygon, box

from tiles.errors import TilesInputError
from tiles.geometry import geometry_spec
from tiles.geotiff import write_raster
from tiles.mercator import xy_to_lonlat_array


def center_crop_offset(size: int, crop: int) -> int:
    """Offset (px) of a centred crop of ``crop`` px along an axis of ``size`` px, as torchvision's
    ``CenterCrop`` places it: ``round((size - crop) / 2)`` (Python rounding), or minus the left/top zero
    padding ``(crop - size) // 2`` when the crop is larger."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


@dataclass(frozen=True, eq=False)
class Chip:
    """Pixels ``image`` (H, W, 3) uint8 with ``crs`` and ``transform`` (pixel (col, row) → ``crs``).

    ``ground_resolution`` is metres per pixel at the centre; ``center`` the requested (lat, lon);
    ``geometry`` the training geometry (bingmap, sentinel, googleEarth); ``provider`` and ``attribution``
    name the imagery source (show the attribution wherever the pixels are shown); ``notes`` record how
    the chip was made; ``scale`` is set on crops made by :meth:`crop`.
    """

    image: np.ndarray
    crs: CRS
    transform: Affine
    ground_resolution: float
    provider: str
    attribution: str
    geometry: str
    center: tuple[float, float]
    notes: tuple[str, ...] = field(default_factory=tuple)
    scale: int | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in :attr:`crs`."""
        return _bounds(self.transform, self.width, self.height)

    @property
    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees; west/east may pass ±180 for chips across the antimeridian."""
        return _lonlat_box(self.crs, self.bounds)

    def footprint(self) -> Polygon:
        """The whole chip as a lon/lat polygon."""
        return box(*self.lonlat_bounds)

    def _crop_transform(self, scale: int) -> tuple[Affine, int, int, int]:
        if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 1:
            raise TilesInputError(
                f"scale must be a positive integer (1, 3 or 5 in training), got {scale!r}; e.g. chip.crop(1)"
            )
        size = int(scale) * geometry_spec(self.geometry).crop_tile  # an unknown geometry names the valid ones
        left = center_crop_offset(self.width, size)
        top = center_crop_offset(self.height, size)
        return self.transform @ Affine.translation(left, top), left, top, size

    def crop(self, scale: int) -> Chip:
        """Centre crop of ``scale`` × 300 px (bingmap) or × 256 px (sentinel, googleEarth), placed exactly
        as the checkpoint's transform places it, with zero padding if larger than the chip."""
        transform, left, top, size = self._crop_transform(scale)
        out = np.zeros((size, size, 3), dtype=self.image.dtype)
        r0, c0 = max(0, top), max(0, left)
        r1, c1 = min(self.height, top + size), min(self.width, left + size)
        out[r0 - top : r1 - top, c0 - left : c1 - left] = self.image[r0:r1, c0:c1]
        note = f"centre crop {size}×{size} px at offset ({left}, {top}) for scale {scale}"
        return replace(self, image=out, transform=transform, scale=int(scale), notes=(*self.notes, note))

    def footprints(self, scales: tuple[int, ...] = (1, 3, 5)) -> dict[int, Polygon]:
        """{scale: lon/lat polygon of that scale's crop} without copying pixels."""
        out = {}
        for s in scales:
            transform, _, _, size = self._crop_transform(s)
            out[s] = box(*_lonlat_box(self.crs, _bounds(transform, size, size)))
        return out

    def patch_grid(self, n: int = 14) -> list[Polygon]:
        """The n×n cells of this chip (call it on ``chip.crop(s)`` for the model's view) as lon/lat
        polygons, row-major from the top-left: index ``row * n + col`` is ViT token ``row * n + col``."""
        if n < 1:
            raise TilesInputError(f"n must be a positive number of cells per side, got {n}; the model's grid is n=14")
        cols = np.linspace(0, self.width, n + 1)
        rows = np.linspace(0, self.height, n + 1)
        t = self.transform
        xs = t.c + t.a * cols
        ys = t.f + t.e * rows
        lon, _ = _to_lonlat(self.crs, xs, np.full_like(xs, ys[0]))
        _, lat = _to_lonlat(self.crs, np.full_like(ys, xs[0]), ys)
        cells = []
        for i in range(n):
            for j in range(n):
                cells.append(box(min(lon[j], lon[j + 1]), min(lat[i], lat[i + 1]), max(lon[j], lon[j + 1]), max(lat[i], lat[i + 1])))
        return cells

    def lonlat_of_pixel(self, row: float, col: float) -> tuple[float, float]:
        """(lon, lat) of a pixel position (use row + 0.5, col + 0.5 for a pixel centre)."""
        x, y = self.transform @ (col, row)
        lon, lat = _to_lonlat(self.crs, np.array([x]), np.array([y]))
        return float(lon[0]), float(lat[0])

    def tags(self) -> dict[str, str]:
        """Provenance tags written into GeoTIFFs (provider, attribution, geometry, centre, notes)."""
        return {
            "source": self.provider,
            "attribution": self.attribution,
            "geometry": self.geometry,
            "center_lat": f"{self.center[0]:.7f}",
            "center_lon": f"{self.center[1]:.7f}",
            "ground_resolution_m": f"{self.ground_resolution:.4f}",
            "scale": str(self.scale or ""),
            "notes": "; ".join(self.notes),
        }

    def to_geotiff(self, path: str | Path | None, driver: str = "COG") -> bytes | None:
        """Write the RGB chip as a (Cloud-Optimized) GeoTIFF with its CRS, transform and provenance tags;
        ``path`` None returns the bytes. See :func:`tiles.geotiff.write_raster` for other rasters."""
        return write_raster(
            path,
            np.moveaxis(self.image, -1, 0),
            self.crs,
            self.transform,
            tags=self.tags(),
            band_descriptions=("red", "green", "blue"),
            driver=driver,
        )

    def __repr__(self) -> str:
        w, s, e, n = self.lonlat_bounds
        return (
            f"Chip({self.geometry}, {self.width}×{self.height} px, {self.ground_resolution:.3f} m/px, "
            f"{self.crs.to_string()}, lon {w:.5f}..{e:.5f}, lat {s:.5f}..{n:.5f}, provider={self.provider!r}"
            f"{', scale=' + str(self.scale) if self.scale else ''})"
        )


def _bounds(t: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    xs = (t.c, t.c + t.a * width)
    ys = (t.f, t.f + t.e * height)
    return (min(xs), min(ys), max(xs), max(ys))


def _to_lonlat(crs: CRS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    epsg = crs.to_epsg()
    if epsg == 4326:
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if epsg == 3857:
        return xy_to_lonlat_array(x, y)
    transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def _lonlat_box(crs: CRS, bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    left, bottom, right, top = bounds
    lon, lat = _to_lonlat(crs, np.array([left, right]), np.array([bottom, top]))
    return float(lon[0]), float(lat[0]), float(lon[1]), float(lat[1])
