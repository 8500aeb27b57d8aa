"""Imagery: the one door from the product (engine, app) to the :mod:`tiles` package.

``tiles`` sits below the core and has its own error root (``TilesError``); every call here re-raises it
as the product's :class:`~sat2sound_core.common.errors.ImageryError` (or ``ConfigError`` for a bad
``SAT2SOUND_TILE_*`` variable), with the same message, so front ends catch ``Sat2SoundError`` alone.
Providers are described by :class:`ProviderInfo` (what a select box or a basemap needs) so callers do
not handle provider objects. Nothing here imports rasterio until a chip is fetched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sat2sound_core.common.errors import ConfigError, ImageryError

if TYPE_CHECKING:
    from tiles.chip import Chip
    from tiles.config import CustomProviderConfig
    from tiles.providers import Provider

CUSTOM = "custom"


@contextmanager
def imagery_errors() -> Iterator[None]:
    """Re-raise ``tiles`` errors from the block as the product's errors (message kept, cause chained)."""
    from tiles.errors import TilesConfigError, TilesError

    try:
        yield
    except TilesConfigError as exc:
        raise ConfigError(str(exc)) from exc
    except TilesError as exc:
        raise ImageryError(str(exc)) from exc


@dataclass(frozen=True)
class ProviderInfo:
    """What a front end shows of a provider: its name, attribution, terms in a sentence, and for web
    tile sources the XYZ ``url_template`` (None for local files) and deepest zoom; ``needs_key`` when the
    template carries an API key (keep such templates on the server)."""

    name: str
    attribution: str
    notes: str
    url_template: str | None
    max_zoom: int
    needs_key: bool


def _info(provider: Provider) -> ProviderInfo:
    template = getattr(provider, "url_template", None)
    return ProviderInfo(
        name=provider.name,
        attribution=provider.attribution,
        notes=provider.notes,
        url_template=str(template) if template is not None else None,
        max_zoom=int(provider.max_zoom),
        needs_key=bool(getattr(provider, "key_env", None)),
    )


def list_providers() -> list[ProviderInfo]:
    """The built-in providers, in the registry's order."""
    from tiles.providers import REGISTRY

    with imagery_errors():
        return [_info(factory()) for factory in REGISTRY.values()]


def provider_info(spec: str | Path | Provider) -> ProviderInfo:
    """A provider named by ``spec`` (a registry name, path or template), described."""
    return _info(get_provider(spec))


def get_provider(spec: str | Path | Provider) -> Provider:
    """Resolve a registry name, a local GeoTIFF/COG/MBTiles path, an http(s) ``{z}/{x}/{y}`` template or a
    provider object (unknown names raise :class:`ImageryError` listing the valid ones)."""
    from tiles.providers import get_provider as resolve

    with imagery_errors():
        return resolve(spec)


def default_provider(sat_type: str) -> str | None:
    """The registry name of the default provider for a checkpoint's imagery type (None: no default)."""
    from tiles.providers import DEFAULT_PROVIDER

    return DEFAULT_PROVIDER.get(sat_type)


def custom_tiles(env: Mapping[str, str] | None = None) -> CustomProviderConfig | None:
    """The XYZ source configured with ``SAT2SOUND_TILE_URL`` (+ attribution, max zoom), or None; bad
    values raise :class:`ConfigError` naming the variable."""
    from tiles.config import custom_provider_config as read

    with imagery_errors():
        return read(dict(env) if env is not None else None)


def custom_provider(env: Mapping[str, str] | None = None) -> Provider | None:
    """The provider for ``SAT2SOUND_TILE_URL`` (named ``custom``), or None when it is unset."""
    custom = custom_tiles(env)
    if custom is None:
        return None
    with imagery_errors():
        return custom.provider()


def fetch_chip(lat: float, lon: float, geometry: str, provider: str | Path | Provider | None = None) -> Chip:
    """The training-geometry chip around (lat, lon) (``tiles.fetch_chip``; ``provider`` None: the
    geometry's default)."""
    import tiles

    with imagery_errors():
        return tiles.fetch_chip(lat, lon, geometry, provider=provider)


def crop(chip: Chip, scale: int) -> Chip:
    """The chip's centre crop for ``scale``, exactly as the checkpoint's transform crops it."""
    with imagery_errors():
        return chip.crop(scale)
