"""Configuration of :mod:`tiles`, read from the same ``SAT2SOUND_*`` variables as the product settings.

``tiles`` may not import ``sat2sound_core`` (dependencies point ``app -> sat2sound_core -> tiles``), so the
few settings it needs are read here with the same names, defaults and boolean spelling as
``sat2sound_core.common.settings.Settings`` (a test keeps the two in agreement). The config is re-read on every
call of :func:`get_config`, which is cheap, so tests and the app can change the environment at run time.

A custom XYZ imagery source (``SAT2SOUND_TILE_URL`` with ``SAT2SOUND_TILE_ATTRIBUTION`` and
``SAT2SOUND_TILE_MAX_ZOOM``) is read here and nowhere else: :func:`custom_provider_config` parses and
validates it for the engine (the model's chips) and the app (the map's basemap). This module is the only
one in :mod:`tiles` that reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tiles.errors import ProviderError, TilesConfigError

if TYPE_CHECKING:
    from tiles.providers import XYZProvider

PREFIX = "SAT2SOUND_"
DEFAULT_USER_AGENT = "sat2sound-map/0.1 (+https://github.com/sat2sound-map)"
AZURE_KEY_ENV = "AZURE_MAPS_KEY"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
DEFAULT_TILE_DEADLINE = 60.0
DEFAULT_TILE_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_TILE_MAX_PIXELS = 1024 * 1024


def default_home() -> Path:
    """``$XDG_CACHE_HOME/sat2sound`` or ``~/.cache/sat2sound`` (the product's default home)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sat2sound"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise TilesConfigError(f"{PREFIX}{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no.")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float, *, whole: bool,
            what: str = "usable", hint: str = "") -> float:
    raw = env.get(PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise TilesConfigError(
            f"{PREFIX}{name}={raw!r} is not {what}; set {hint}{kind} from {low:g} to {high:g} "
            f"(default {PREFIX}{name}={default:g})."
        )
    return value


@dataclass(frozen=True)
class TilesConfig:
    """Settings :mod:`tiles` uses: cache home, User-Agent, cache switches and the googleEarth source.

    ``googleearth_source`` (``SAT2SOUND_GOOGLEEARTH_SOURCE``, tiles-only) names a local file/folder or an
    http(s) ``{z}/{x}/{y}`` template used when ``fetch_chip(..., "googleEarth")`` gets no provider.
    ``offline`` (``SAT2SOUND_OFFLINE``, the product's switch) serves tiles from the caches only.

    Limits against hostile or broken tile servers (tiles-only settings): ``tile_deadline``
    (``SAT2SOUND_TILE_DEADLINE``, seconds, default 60) is the wall-clock budget of one chip's tiles,
    retries and backoff included; ``tile_max_bytes`` (``SAT2SOUND_TILE_MAX_BYTES``, default 4 MiB) caps
    one tile body after content decoding (gzip bombs, endless bodies); ``tile_max_pixels``
    (``SAT2SOUND_TILE_MAX_PIXELS``, default 1048576 = 1024²) caps a tile's pixels, checked from the image
    header before anything is decoded.
    """

    home: Path
    user_agent: str = DEFAULT_USER_AGENT
    tile_cache: bool = True
    esri_disk_cache: bool = False
    googleearth_source: str = ""
    offline: bool = False
    tile_deadline: float = DEFAULT_TILE_DEADLINE
    tile_max_bytes: int = DEFAULT_TILE_MAX_BYTES
    tile_max_pixels: int = DEFAULT_TILE_MAX_PIXELS

    @property
    def tile_cache_dir(self) -> Path:
        """Folder of the on-disk tile caches (``<home>/tiles``; created when first written)."""
        return self.home / "tiles"


def get_config(env: Mapping[str, str] | None = None) -> TilesConfig:
    """Read :class:`TilesConfig` from ``env`` (default ``os.environ``), validating booleans and limits."""
    env = dict(os.environ if env is None else env)
    home_raw = env.get(PREFIX + "HOME")
    home = Path(home_raw).expanduser() if home_raw else default_home()
    return TilesConfig(
        home=home,
        user_agent=env.get(PREFIX + "USER_AGENT") or DEFAULT_USER_AGENT,
        tile_cache=_bool(env, "TILE_CACHE", True),
        esri_disk_cache=_bool(env, "ESRI_DISK_CACHE", False),
        googleearth_source=env.get(PREFIX + "GOOGLEEARTH_SOURCE", "").strip(),
        offline=_bool(env, "OFFLINE", False),
        tile_deadline=_number(env, "TILE_DEADLINE", DEFAULT_TILE_DEADLINE, 0.1, 3600.0, whole=False),
        tile_max_bytes=int(_number(env, "TILE_MAX_BYTES", DEFAULT_TILE_MAX_BYTES, 1024, 2**30, whole=True)),
        tile_max_pixels=int(_number(env, "TILE_MAX_PIXELS", DEFAULT_TILE_MAX_PIXELS, 256 * 256, 2**26, whole=True)),
    )


def env_key(name: str) -> str | None:
    """The API key in environment variable ``name`` (stripped), or None. Never log the result."""
    value = os.environ.get(name, "").strip()
    return value or None


TILE_URL_ENV = PREFIX + "TILE_URL"
DEFAULT_CUSTOM_ATTRIBUTION = "Custom imagery (set SAT2SOUND_TILE_ATTRIBUTION to credit its source)"
DEFAULT_CUSTOM_MAX_ZOOM = 19


@dataclass(frozen=True)
class CustomProviderConfig:
    """A custom XYZ imagery source from the environment: ``url`` (``SAT2SOUND_TILE_URL``, a
    ``{z}/{x}/{y}`` template), ``attribution`` (``SAT2SOUND_TILE_ATTRIBUTION``) and ``max_zoom``
    (``SAT2SOUND_TILE_MAX_ZOOM``, default 19: the deepest zoom the server has imagery for)."""

    url: str
    attribution: str = DEFAULT_CUSTOM_ATTRIBUTION
    max_zoom: int = DEFAULT_CUSTOM_MAX_ZOOM
    name: str = "custom"

    def provider(self) -> XYZProvider:
        """The :class:`tiles.XYZProvider` serving this source."""
        from tiles.providers import XYZProvider

        return XYZProvider(self.url, self.attribution, self.max_zoom, name=self.name)


def _zoom(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(env, name, default, 0, 24, whole=True, what="a zoom level",
                       hint="the deepest zoom the server has imagery for, "))


def custom_provider_config(env: Mapping[str, str] | None = None) -> CustomProviderConfig | None:
    """The custom XYZ source set by ``SAT2SOUND_TILE_URL`` in ``env`` (default ``os.environ``), or None.

    Validated once here: a template the provider would refuse (no ``{z}``/``{x}``/``{y}``, not http(s))
    or a bad ``SAT2SOUND_TILE_MAX_ZOOM`` raises :class:`TilesConfigError` naming the variable and the fix.
    """
    env = dict(os.environ if env is None else env)
    url = env.get(TILE_URL_ENV, "").strip()
    if not url:
        return None
    config = CustomProviderConfig(
        url=url,
        attribution=env.get(PREFIX + "TILE_ATTRIBUTION", "").strip() or DEFAULT_CUSTOM_ATTRIBUTION,
        max_zoom=_zoom(env, "TILE_MAX_ZOOM", DEFAULT_CUSTOM_MAX_ZOOM),
    )
    try:
        config.provider()
    except ProviderError as exc:
        raise TilesConfigError(f"{TILE_URL_ENV} is not a usable tile source: {exc}") from None
    return config
