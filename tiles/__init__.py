"""Imagery for Sat2Sound: georeferenced chips exactly as the model saw them in training.

``fetch_chip(lat, lon, geometry, provider=None)`` returns a :class:`Chip` in one of the training
geometries (``bingmap``, ``sentinel``, ``googleEarth``) from a tile provider (EOX, Esri, Azure Maps, any
XYZ template, MBTiles) or a local GeoTIFF/COG; ``Chip.crop(scale)``, ``Chip.patch_grid()`` and
``Chip.footprints()`` give the model's view and its footprints on the map. This package never imports
``sat2sound_core``.
"""

from tiles.cache import DiskTileCache, MemoryTileCache
from tiles.chip import Chip, center_crop_offset
from tiles.config import TilesConfig, get_config
from tiles.errors import (
    CoordinateError,
    LocalSourceError,
    NoImageryError,
    ProviderError,
    TileFetchError,
    TilesConfigError,
    TilesError,
)
from tiles.fetch import fetch_chip, resolve_provider
from tiles.fetcher import TileFetcher, clear_memory_cache
from tiles.geometry import GEOMETRIES, GeometrySpec, Grid, target_grid
from tiles.geotiff import write_raster
from tiles.providers import (
    LocalProvider,
    LocalRasterProvider,
    MBTilesProvider,
    Provider,
    TileSource,
    XYZProvider,
    get_provider,
    list_providers,
)

__all__ = [
    "GEOMETRIES",
    "Chip",
    "CoordinateError",
    "DiskTileCache",
    "GeometrySpec",
    "Grid",
    "LocalProvider",
    "LocalRasterProvider",
    "LocalSourceError",
    "MBTilesProvider",
    "MemoryTileCache",
    "NoImageryError",
    "Provider",
    "ProviderError",
    "TileFetchError",
    "TileFetcher",
    "TileSource",
    "TilesConfig",
    "TilesConfigError",
    "TilesError",
    "XYZProvider",
    "center_crop_offset",
    "clear_memory_cache",
    "fetch_chip",
    "get_config",
    "get_provider",
    "list_providers",
    "resolve_provider",
    "target_grid",
    "write_raster",
]
