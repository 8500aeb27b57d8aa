"""Configuration of :mod:`tiles`, read from the same ``SAT2SOUND_*`` variables as the product settings.

``tiles`` may not import ``sat2sound_core`` (dependencies point ``app -> sat2sound_core -> tiles``), so the
few settings it needs are read here with the same names, defaults and boolean spelling as
``sat2sound_core.common.settings.Settings`` (a test keeps the two in agreement). The config is re-read on every
call of :func:`get_config`, which is cheap, so tests and the app can change the environment at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tiles.errors import TilesConfigError

PREFIX = "SAT2SOUND_"
DEFAULT_USER_AGENT = "sat2sound-map/0.1 (+https://github.com/sat2sound-map)"
AZURE_KEY_ENV = "AZURE_MAPS_KEY"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_home() -> Path:
    """``$XDG_CACHE_HOME/sat2sound`` or ``~/.cache/sat2sound`` (the product's default home)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sat2sound"


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise TilesConfigError(f"{PREFIX}{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no.")


@dataclass(frozen=True)
class TilesConfig:
    """Settings :mod:`tiles` uses: cache home, User-Agent, cache switches and the googleEarth source.

    ``googleearth_source`` (``SAT2SOUND_GOOGLEEARTH_SOURCE``, tiles-only) names a local file/folder or an
    http(s) ``{z}/{x}/{y}`` template used when ``fetch_chip(..., "googleEarth")`` gets no provider.
    ``offline`` (``SAT2SOUND_OFFLINE``, the product's switch) serves tiles from the caches only.
    """

    home: Path
    user_agent: str = DEFAULT_USER_AGENT
    tile_cache: bool = True
    esri_disk_cache: bool = False
    googleearth_source: str = ""
    offline: bool = False

    @property
    def tile_cache_dir(self) -> Path:
        """Folder of the on-disk tile caches (``<home>/tiles``; created when first written)."""
        return self.home / "tiles"


def get_config(env: dict[str, str] | None = None) -> TilesConfig:
    """Read :class:`TilesConfig` from ``env`` (default ``os.environ``), validating booleans."""
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
    )


DEFAULT_CUSTOM_ATTRIBUTION = "Custom imagery (set SAT2SOUND_TILE_ATTRIBUTION to credit its source)"
DEFAULT_CUSTOM_MAX_ZOOM = 19


@dataclass(frozen=True)
class CustomTiles:
    """A user's own XYZ imagery source: ``SAT2SOUND_TILE_URL`` (a template with ``{z}``, ``{x}``, ``{y}``),
    ``SAT2SOUND_TILE_ATTRIBUTION`` (shown with its pixels) and ``SAT2SOUND_TILE_MAX_ZOOM`` (default 19)."""

    url_template: str
    attribution: str = DEFAULT_CUSTOM_ATTRIBUTION
    max_zoom: int = DEFAULT_CUSTOM_MAX_ZOOM


def custom_tiles(env: dict[str, str] | None = None) -> CustomTiles | None:
    """The custom XYZ source configured in ``env`` (default ``os.environ``), or None when
    ``SAT2SOUND_TILE_URL`` is unset; a template without ``{z}``/``{x}``/``{y}`` or a max zoom that is not
    a whole number from 0 to 30 raises :class:`TilesConfigError`."""
    env = dict(os.environ if env is None else env)
    url = env.get(PREFIX + "TILE_URL", "").strip()
    if not url:
        return None
    if not all(k in url for k in ("{z}", "{x}", "{y}")):
        raise TilesConfigError(
            f"{PREFIX}TILE_URL={url!r} is not an XYZ template; it needs {{z}}, {{x}} and {{y}}, "
            "e.g. http://127.0.0.1:8000/{z}/{x}/{y}.png"
        )
    attribution = env.get(PREFIX + "TILE_ATTRIBUTION", "").strip() or DEFAULT_CUSTOM_ATTRIBUTION
    raw_zoom = env.get(PREFIX + "TILE_MAX_ZOOM", "").strip()
    try:
        max_zoom = int(raw_zoom) if raw_zoom else DEFAULT_CUSTOM_MAX_ZOOM
    except ValueError:
        max_zoom = -1
    if not 0 <= max_zoom <= 30:
        raise TilesConfigError(
            f"{PREFIX}TILE_MAX_ZOOM={raw_zoom!r} is not a zoom level; set a whole number from 0 to 30, "
            f"e.g. {PREFIX}TILE_MAX_ZOOM={DEFAULT_CUSTOM_MAX_ZOOM}."
        )
    return CustomTiles(url, attribution, max_zoom)


def env_key(name: str) -> str | None:
    """The API key in environment variable ``name`` (stripped), or None. Never log the result."""
    value = os.environ.get(name, "").strip()
    return value or None
