"""What the app can be pointed at, read once from environment variables (documented in docs/app.md).

The product-wide settings (``SAT2SOUND_HOME``, ``SAT2SOUND_GALLERY``, ``SAT2SOUND_TANGOFLUX`` …) live
in :mod:`sat2sound_core.common.settings`. A custom XYZ imagery source (``SAT2SOUND_TILE_URL``,
``SAT2SOUND_TILE_ATTRIBUTION``, ``SAT2SOUND_TILE_MAX_ZOOM``) is parsed once, by
:func:`sat2sound_core.imagery.custom_tiles`: the engine uses it for the model's chips and this module
for the map's basemap, so one variable drives both. The ``SAT2SOUND_APP_*`` knobs only
concern the app: a default checkpoint (name or local file), the starting view and the caption count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sat2sound_core import imagery
from sat2sound_core.common.errors import ConfigError
from sat2sound_core.maps import kinds

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

    @property
    def custom_tiles(self) -> bool:
        """True when a custom XYZ URL template replaces the built-in imagery providers."""
        return bool(self.tile_url)


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it like {name}={default}.") from None


def from_env(env: dict[str, str] | None = None) -> AppConfig:
    """Read ``SAT2SOUND_APP_*`` variables (default ``os.environ``) and validate them."""
    env = dict(os.environ if env is None else env)
    custom = imagery.custom_tiles(env)
    top_k = int(_float(env, "SAT2SOUND_APP_TOP_K", 5))
    if not 1 <= top_k <= 50:
        raise ConfigError(f"SAT2SOUND_APP_TOP_K={top_k} must be between 1 and 50.")
    kind = env.get("SAT2SOUND_APP_HEATMAP", "").strip() or DEFAULT_HEATMAP_KIND
    if kind not in kinds.kind_keys():  # the registry of heatmap kinds (sat2sound_core.maps.kinds)
        raise ConfigError(f"SAT2SOUND_APP_HEATMAP={kind!r}; use one of {', '.join(kinds.kind_keys())}.")
    return AppConfig(
        checkpoint=env.get("SAT2SOUND_APP_CHECKPOINT", "").strip() or DEFAULT_CHECKPOINT,
        tile_url=custom.url_template if custom is not None else "",
        tile_attribution=custom.attribution if custom is not None else "",
        tile_max_zoom=custom.max_zoom if custom is not None else 19,
        start_lat=_float(env, "SAT2SOUND_APP_START_LAT", 52.5163),
        start_lon=_float(env, "SAT2SOUND_APP_START_LON", 13.3777),
        top_k=top_k,
        heatmap_kind=kind,
    )
