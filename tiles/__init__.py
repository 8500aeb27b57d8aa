"""Imagery for Sat2Sound: georeferenced chips exactly as the model saw them in training.

``fetch_chip(lat, lon, geometry, provider=None)`` returns a :class:`Chip` in one of the training
geometries (``bingmap``, ``sentinel``, ``googleEarth``) from a tile provider (EOX, Esri, Azure Maps, any
XYZ template, MBTiles) or a local GeoTIFF/COG; ``Chip.crop(scale)``, ``Chip.patch_grid()`` and
``Chip.footprints()`` give the model's view and its footprints on the map. This package never imports
``sat2sound_core``.

Names are imported lazily (on first use), so ``import tiles`` to read the provider list does not pull in
rasterio; type checkers see the eager imports under ``TYPE_CHECKING``. The lazy lookup is the same pattern
as ``sat2sound_core.common.lazy.lazy_exports`` (a name → module table, the value stored on first use),
written out here because ``tiles`` must not import the core.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiles.cache import DiskTileCache, MemoryTileCache
    from tiles.chip import Chip, center_crop_offset
    from tiles.config import CustomProviderConfig, TilesConfig, custom_provider_config, get_config
    from tiles.errors import (
        CoordinateError,
        LocalSourceError,
        NoImageryError,
        ProviderError,
        TileFetchError,
        TilesConfigError,
        TilesError,
        TilesInputError,
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

_LAZY = {
    "Chip": "tiles.chip",
    "CoordinateError": "tiles.errors",
    "CustomProviderConfig": "tiles.config",
    "DiskTileCache": "tiles.cache",
    "GEOMETRIES": "tiles.geometry",
    "GeometrySpec": "tiles.geometry",
    "Grid": "tiles.geometry",
    "LocalProvider": "tiles.providers",
    "LocalRasterProvider": "tiles.providers",
    "LocalSourceError": "tiles.errors",
    "MBTilesProvider": "tiles.providers",
    "MemoryTileCache": "tiles.cache",
    "NoImageryError": "tiles.errors",
    "Provider": "tiles.providers",
    "ProviderError": "tiles.errors",
    "TileFetchError": "tiles.errors",
    "TileFetcher": "tiles.fetcher",
    "TileSource": "tiles.providers",
    "TilesConfig": "tiles.config",
    "TilesConfigError": "tiles.errors",
    "TilesError": "tiles.errors",
    "TilesInputError": "tiles.errors",
    "XYZProvider": "tiles.providers",
    "center_crop_offset": "tiles.chip",
    "clear_memory_cache": "tiles.fetcher",
    "custom_provider_config": "tiles.config",
    "fetch_chip": "tiles.fetch",
    "get_config": "tiles.config",
    "get_provider": "tiles.providers",
    "list_providers": "tiles.providers",
    "resolve_provider": "tiles.fetch",
    "target_grid": "tiles.geometry",
    "write_raster": "tiles.geotiff",
}

__all__ = [
    "Chip",
    "CoordinateError",
    "CustomProviderConfig",
    "DiskTileCache",
    "GEOMETRIES",
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
    "TilesInputError",
    "XYZProvider",
    "center_crop_offset",
    "clear_memory_cache",
    "custom_provider_config",
    "fetch_chip",
    "get_config",
    "get_provider",
    "list_providers",
    "resolve_provider",
    "target_grid",
    "write_raster",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tiles' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
