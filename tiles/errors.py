"""Errors raised on purpose by :mod:`tiles`. Each message says what was wrong and how to fix it.

``tiles`` sits below ``sat2sound_core`` and must not import it, so it has its own small hierarchy. All
classes derive from :class:`TilesError`; those caused by bad input also derive from ``ValueError``.
Messages never contain API keys.
"""

from __future__ import annotations


class TilesError(Exception):
    """Base class of every error :mod:`tiles` raises deliberately."""


class TilesInputError(TilesError, ValueError):
    """An argument to a :mod:`tiles` call cannot be used (a crop scale, a grid size, raster data of the
    wrong shape); the message says what to pass instead."""


class TilesConfigError(TilesError, ValueError):
    """An environment variable read by :mod:`tiles.config` has an invalid value."""


class CoordinateError(TilesError, ValueError):
    """A latitude/longitude is non-numeric, out of range or beyond web-mercator's ±85.0511°."""


class ProviderError(TilesError, ValueError):
    """A provider is unknown, misconfigured (bad template, missing key) or cannot serve this geometry."""


class TileFetchError(TilesError):
    """Tiles could not be downloaded (network, HTTP status, non-image body) even after retries."""


class NoImageryError(TilesError):
    """The provider has no imagery at this place (missing or placeholder tiles, an all-blank chip)."""


class LocalSourceError(TilesError, ValueError):
    """A local GeoTIFF/COG/MBTiles file or folder is unreadable or does not cover the point."""
