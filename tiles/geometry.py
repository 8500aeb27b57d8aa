"""The three source geometries of the training data, as exact target grids.

* ``bingmap``: 1500×1500 native web-mercator zoom-18 pixels (256-px tiles) centred on the point, no
  resampling; ground resolution 0.597·cos(lat) m/px, as the Bing static-map API rendered it. Scale s
  crops s×300 px.
* ``sentinel``: 1280×1280 in EPSG:4326 spanning ±6400 m east/west/north/south of the point (geodesic
  offsets, equal to GeoSound's local-tangent-plane bbox to millimetres): 10 m/px at any latitude. Scale
  s crops s×256 px.
* ``googleEarth`` (SoundingEarth): 1024×1024 at a nominal 0.2 m/px; here an EPSG:3857 grid centred on
  the point whose pixels are 0.2 m on the ground at the point. Scale s crops s×256 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS

from tiles.errors import ProviderError
from tiles.mercator import ORIGIN, ground_resolution, lonlat_to_xy, mercator_resolution

BING_ZOOM = 18
SENTINEL_RADIUS_M = 6400.0
SENTINEL_GSD = 10.0
GOOGLEEARTH_GSD = 0.2
CRS_3857 = CRS.from_epsg(3857)
CRS_4326 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class GeometrySpec:
    """A training image geometry: full source size (px), crop tile per scale (px), nominal m/px, CRS."""

    name: str
    size: int
    crop_tile: int
    nominal_gsd: float
    crs: CRS
    description: str


GEOMETRIES: dict[str, GeometrySpec] = {
    "bingmap": GeometrySpec(
        "bingmap", 1500, 300, 0.6, CRS_3857, "1500² native web-mercator z18 pixels (Bing static map)"
    ),
    "sentinel": GeometrySpec(
        "sentinel", 1280, 256, SENTINEL_GSD, CRS_4326, "1280² EPSG:4326, ±6400 m, 10 m/px (EOX s2cloudless)"
    ),
    "googleEarth": GeometrySpec(
        "googleEarth", 1024, 256, GOOGLEEARTH_GSD, CRS_3857, "1024² at 0.2 m/px (SoundingEarth)"
    ),
}


def from_bounds(west: float, south: float, east: float, north: float, width: int, height: int) -> Affine:
    """North-up affine transform of a ``width`` × ``height`` grid spanning the given bounds."""
    return Affine((east - west) / width, 0.0, west, 0.0, -(north - south) / height, north)


def geometry_spec(name: str) -> GeometrySpec:
    """The :class:`GeometrySpec` called ``name``; unknown names raise listing the valid ones."""
    spec = GEOMETRIES.get(name) if isinstance(name, str) else None
    if spec is None:
        lowered = {k.lower(): v for k, v in GEOMETRIES.items()}
        spec = lowered.get(str(name).lower())
    if spec is None:
        raise ProviderError(f"unknown geometry {name!r}; use one of {', '.join(GEOMETRIES)}.")
    return spec


@dataclass(frozen=True)
class Grid:
    """An exact raster grid: CRS, affine transform (top-left origin), size and nominal ground m/px."""

    crs: CRS
    transform: Affine
    width: int
    height: int
    ground_resolution: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in ``crs``."""
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)


def bing_window(lat: float, lon: float, size: int = 1500, zoom: int = BING_ZOOM) -> tuple[int, int]:
    """(left, top) global pixel of the ``size``-px window centred on the point at ``zoom`` (256-px tiles).

    ``left = round(px - size/2)`` with halves rounded up, so the point falls in pixel ``size/2`` (±0.5).
    """
    x, y = lonlat_to_xy(lon, lat)
    res = mercator_resolution(zoom)
    px, py = (x + ORIGIN) / res, (ORIGIN - y) / res
    return math.floor(px - size / 2 + 0.5), math.floor(py - size / 2 + 0.5)


def pixel_grid(left: int, top: int, size: int, zoom: int) -> Affine:
    """Affine transform (EPSG:3857) of a window whose top-left is global pixel (left, top) at ``zoom``."""
    res = mercator_resolution(zoom)
    return Affine(res, 0.0, left * res - ORIGIN, 0.0, -res, ORIGIN - top * res)


def bing_grid(lat: float, lon: float) -> Grid:
    """The ``bingmap`` grid of a point (EPSG:3857, zoom-18 pixels)."""
    size = GEOMETRIES["bingmap"].size
    left, top = bing_window(lat, lon, size)
    return Grid(CRS_3857, pixel_grid(left, top, size, BING_ZOOM), size, size, ground_resolution(BING_ZOOM, lat))


def sentinel_bounds(lat: float, lon: float, radius: float = SENTINEL_RADIUS_M) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees, ``radius`` metres from the point along the four geodesic
    azimuths. Longitudes are continuous across the antimeridian (east may exceed 180, west go below -180)."""
    lons, lats, _ = _GEOD.fwd([lon] * 4, [lat] * 4, [0.0, 90.0, 180.0, 270.0], [radius] * 4)
    north, south = lats[0], lats[2]
    east, west = lons[1], lons[3]
    if east < lon:
        east += 360.0
    if west > lon:
        west -= 360.0
    return west, south, east, north


def sentinel_grid(lat: float, lon: float) -> Grid:
    """The ``sentinel`` grid of a point (EPSG:4326, 1280², ±6400 m)."""
    size = GEOMETRIES["sentinel"].size
    w, s, e, n = sentinel_bounds(lat, lon)
    return Grid(CRS_4326, from_bounds(w, s, e, n, size, size), size, size, SENTINEL_GSD)


def googleearth_grid(lat: float, lon: float) -> Grid:
    """The ``googleEarth`` grid of a point (EPSG:3857, 1024², 0.2 m on the ground at the point)."""
    size = GEOMETRIES["googleEarth"].size
    step = GOOGLEEARTH_GSD / math.cos(math.radians(lat))
    x, y = lonlat_to_xy(lon, lat)
    half = size / 2 * step
    return Grid(CRS_3857, from_bounds(x - half, y - half, x + half, y + half, size, size), size, size, GOOGLEEARTH_GSD)


def target_grid(geometry: str, lat: float, lon: float) -> Grid:
    """The exact grid of ``geometry`` around (lat, lon)."""
    name = geometry_spec(geometry).name
    if name == "bingmap":
        return bing_grid(lat, lon)
    if name == "sentinel":
        return sentinel_grid(lat, lon)
    return googleearth_grid(lat, lon)


def source_zoom(target_gsd: float, lat: float, max_zoom: int) -> int:
    """Smallest zoom (256-px convention) whose ground resolution at ``lat`` is at most ``target_gsd``,
    capped at ``max_zoom`` (z14 at the equator and z13 at 60° for 10 m)."""
    z = math.ceil(math.log2(2 * ORIGIN * math.cos(math.radians(lat)) / (256 * target_gsd)) - 1e-9)
    return max(0, min(int(z), max_zoom))
