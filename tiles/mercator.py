"""Spherical web-mercator (EPSG:3857) maths for 256-px XYZ tiles, and coordinate validation.

Longitudes are never wrapped here: x grows linearly with longitude (``x = R·λ``), so a window that
crosses the antimeridian keeps continuous coordinates (e.g. lon 180.01) and only tile column indices are
wrapped modulo ``2**z`` when tiles are requested.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from tiles.errors import CoordinateError

EARTH_RADIUS = 6378137.0
ORIGIN = math.pi * EARTH_RADIUS  # 20037508.342789244: half the world width in metres
MAX_LAT = 85.0511  # refuse beyond this (web mercator's limit is 85.05112878°)
TILE_SIZE = 256


def mercator_resolution(z: float, tile_size: int = TILE_SIZE) -> float:
    """Metres of EPSG:3857 per pixel at zoom ``z`` (no cos(lat) factor)."""
    return float(2 * ORIGIN / (tile_size * 2.0**z))


def ground_resolution(z: float, lat: float, tile_size: int = TILE_SIZE) -> float:
    """Ground metres per pixel at zoom ``z`` and latitude ``lat`` (0.597·cos(lat) at z18)."""
    return mercator_resolution(z, tile_size) * math.cos(math.radians(lat))


def lonlat_to_xy(lon: float, lat: float) -> tuple[float, float]:
    """EPSG:3857 metres of (lon, lat); longitude is not wrapped."""
    x = EARTH_RADIUS * math.radians(lon)
    y = EARTH_RADIUS * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return x, y


def xy_to_lonlat(x: float, y: float) -> tuple[float, float]:
    """(lon, lat) of EPSG:3857 metres; inverse of :func:`lonlat_to_xy` (no wrap)."""
    lon = math.degrees(x / EARTH_RADIUS)
    lat = math.degrees(2 * math.atan(math.exp(y / EARTH_RADIUS)) - math.pi / 2)
    return lon, lat


def xy_to_lonlat_array(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`xy_to_lonlat`."""
    lon = np.degrees(np.asarray(x, dtype=np.float64) / EARTH_RADIUS)
    lat = np.degrees(2 * np.arctan(np.exp(np.asarray(y, dtype=np.float64) / EARTH_RADIUS)) - np.pi / 2)
    return lon, lat


def global_pixel(lon: float, lat: float, z: float, tile_size: int = TILE_SIZE) -> tuple[float, float]:
    """Global pixel coordinates (px, py) of a point at zoom ``z``, origin at the top-left of the world."""
    x, y = lonlat_to_xy(lon, lat)
    res = mercator_resolution(z, tile_size)
    return (x + ORIGIN) / res, (ORIGIN - y) / res


def quadkey(x: int, y: int, z: int) -> str:
    """Bing-style quadkey of tile (x, y, z)."""
    digits = []
    for i in range(z, 0, -1):
        mask = 1 << (i - 1)
        digit = (1 if x & mask else 0) + (2 if y & mask else 0)
        digits.append(str(digit))
    return "".join(digits)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.number):
        if isinstance(value, str):
            try:
                return _number(float(value.strip()), what)
            except ValueError:
                pass
        raise CoordinateError(f"{what} must be a number in decimal degrees, got {value!r}.")
    result = float(value)
    if not math.isfinite(result):
        raise CoordinateError(f"{what} must be a finite number in decimal degrees, got {value!r}.")
    return result


def validate_point(lat: object, lon: object) -> tuple[float, float]:
    """Return (lat, lon) as floats, or raise :class:`CoordinateError` naming the problem and the fix.

    Strings holding a number are accepted. Latitude must lie within ±85.0511° (web mercator's limit, which
    every tile provider shares); longitude within [-180, 180].
    """
    lat_f = _number(lat, "latitude")
    lon_f = _number(lon, "longitude")
    if not -90.0 <= lat_f <= 90.0:
        raise CoordinateError(
            f"latitude {lat_f} is out of range [-90, 90]; did you swap latitude and longitude?"
        )
    if abs(lat_f) > MAX_LAT:
        raise CoordinateError(
            f"latitude {lat_f} is beyond web mercator's ±{MAX_LAT}° limit; satellite tiles do not exist "
            "there. Choose a point closer to the equator."
        )
    if not -180.0 <= lon_f <= 180.0:
        raise CoordinateError(
            f"longitude {lon_f} is out of range [-180, 180]; wrap it first, e.g. ((lon + 180) % 360) - 180."
        )
    return lat_f, lon_f
