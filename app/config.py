"""What the app can be pointed at, read once from environment variables (documented in docs/app.md).

The product-wide settings (``SAT2SOUND_HOME``, ``SAT2SOUND_GALLERY``, ``SAT2SOUND_TANGOFLUX`` …) live
in :mod:`sat2sound_core.common.settings`. A custom XYZ imagery source (``SAT2SOUND_TILE_URL``,
``SAT2SOUND_TILE_ATTRIBUTION``, ``SAT2SOUND_TILE_MAX_ZOOM``) is parsed once, by
:func:`sat2sound_core.imagery.custom_tiles`, which the engine uses for the model's chips and this module
for the map's basemap, so one variable drives both. The ``SAT2SOUND_APP_*`` knobs only concern the app: a
default checkpoint (name or local file), the starting view, the caption count and the warm-up delay;
``NPM_CONFIG_REGISTRY`` is where ``app/vendor_assets.py`` fetches the map's JavaScript. No other app module
reads the environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from sat2sound_core import imagery
from sat2sound_core.common.errors import ConfigError
from sat2sound_core.maps import kinds

log = logging.getLogger(__name__)

CHECKPOINTS: dict[str, str] = {
    "bingmap_withmeta": "Bing aerial (~0.6 m/px) + location, month, hour and sources; the best default.",
    "bingmap_nometa": "Bing aerial (~0.6 m/px), image only: ignores the metadata controls.",
    "sentinel_withmeta": "Sentinel-2 (10 m/px, km-scale chips) + metadata: regional soundscapes.",
    "sentinel_nometa": "Sentinel-2 (10 m/px), image only.",
    "SoundingEarth_withmeta": "Google Earth (~0.2 m/px, scale 1 only) + location, month, hour, caption source.",
    "SoundingEarth_nometa": "Google Earth (~0.2 m/px, scale 1 only), image only.",
}
DEFAULT_CHECKPOINT = "bingmap_withmeta"
DEFAULT_HEATMAP_KIND = "text"
REGISTRY = "https://registry.npmjs.org"
DEFAULT_WARMUP_DELAY = 3.0


@dataclass(frozen=True)
class AppConfig:
    """App-only configuration; build it with :func:`from_env`."""

    checkpoint: str = DEFAULT_CHECKPOINT
    tile_url: str = ""
    tile_attribution: str = ""
    tile_max_zoom: int = 19
    start_lat: float = 52.5163
    start_lon: float = 13.3777
    top_k: int = 5
    heatmap_kind: str = DEFAULT_HEATMAP_KIND
    warmup_delay: float | None = DEFAULT_WARMUP_DELAY

    @property
    def custom_tiles(self) -> bool:
        """True when a custom XYZ URL template replaces the built-in imagery providers."""
        return bool(self.tile_url)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it like {name}={default}.") from None


def warmup_delay(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds after the first page run before the heavy imports start in the background
    (``SAT2SOUND_APP_WARMUP_DELAY``, default 3; ``off`` or a negative number: no warm-up). A value that
    is not a number is logged and the default used: a warm-up is not worth a failing page."""
    env = os.environ if env is None else env
    raw = env.get("SAT2SOUND_APP_WARMUP_DELAY", str(DEFAULT_WARMUP_DELAY)).strip().lower()
    if raw in ("off", "no", "false", "none"):
        return None
    try:
        delay = float(raw)
    except ValueError:
        log.warning("SAT2SOUND_APP_WARMUP_DELAY=%r is not a number of seconds; using %g", raw, DEFAULT_WARMUP_DELAY)
        return DEFAULT_WARMUP_DELAY
    return None if delay < 0 else delay


def npm_registry(env: Mapping[str, str] | None = None) -> str:
    """The npm registry ``app/vendor_assets.py`` downloads from (``NPM_CONFIG_REGISTRY``, npm's own
    variable for a mirror; default the public registry), without a trailing slash."""
    env = os.environ if env is None else env
    return (env.get("NPM_CONFIG_REGISTRY") or REGISTRY).rstrip("/")


def _without_secrets(url: str) -> str:
    """``url`` without userinfo and with every query value replaced by ``***`` (for messages shown in
    the browser; a key in the template must never be echoed)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def from_env(env: dict[str, str] | None = None) -> AppConfig:
    """Read ``SAT2SOUND_APP_*`` variables (default ``os.environ``) and validate them."""
    env = dict(os.environ if env is None else env)
    custom = imagery.custom_tiles(env)
    tile_url = custom.url if custom is not None else ""
    if tile_url and not all(k in tile_url for k in ("{z}", "{x}", "{y}")):  # what the map (Leaflet) reads
        raise ConfigError(
            f"SAT2SOUND_TILE_URL={_without_secrets(tile_url)!r} is not an XYZ template the map can show; it needs {{z}}, {{x}} "
            "and {y}, e.g. http://127.0.0.1:8000/{z}/{x}/{y}.png"
        )
    top_k = int(_float(env, "SAT2SOUND_APP_TOP_K", 5))
    if not 1 <= top_k <= 50:
        raise ConfigError(f"SAT2SOUND_APP_TOP_K={top_k} must be between 1 and 50.")
    kind = env.get("SAT2SOUND_APP_HEATMAP", "").strip() or DEFAULT_HEATMAP_KIND
    if kind not in kinds.kind_keys():  # the registry of heatmap kinds (sat2sound_core.maps.kinds)
        raise ConfigError(f"SAT2SOUND_APP_HEATMAP={kind!r}; use one of {', '.join(kinds.kind_keys())}.")
    return AppConfig(
        checkpoint=env.get("SAT2SOUND_APP_CHECKPOINT", "").strip() or DEFAULT_CHECKPOINT,
        tile_url=tile_url,
        tile_attribution=custom.attribution if custom is not None else "",
        tile_max_zoom=custom.max_zoom if custom is not None else 19,
        start_lat=_float(env, "SAT2SOUND_APP_START_LAT", 52.5163),
        start_lon=_float(env, "SAT2SOUND_APP_START_LON", 13.3777),
        top_k=top_k,
        heatmap_kind=kind,
        warmup_delay=warmup_delay(env),
    )
