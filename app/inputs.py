"""Pure helpers that turn what a person typed, clicked or uploaded into validated values.

Nothing here touches Streamlit, so the rules can be unit-tested without a browser: AppTest cannot
click a map, so the click -> point step lives here as plain functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePath

from sat2sound_core.common.errors import InputError

UNKNOWN = "unknown"
AUTO = "auto"

# Upload limits for audio clips: the heatmap only needs a few seconds, so large files are refused
# before they are decoded (the server-wide cap is server.maxUploadSize in .streamlit/config.toml).
AUDIO_TYPES = ("wav", "flac", "ogg", "mp3")
MAX_AUDIO_BYTES = 10 * 1024 * 1024

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_LATLON = re.compile(rf"^\s*\(?\s*({_NUMBER})\s*[,;\s]\s*({_NUMBER})\s*\)?\s*$")


@dataclass(frozen=True)
class Point:
    """A WGS84 point the user chose (by click or by typing), longitude wrapped into [-180, 180)."""

    lat: float
    lon: float

    def label(self) -> str:
        """``"lat, lon"`` with six decimals (about 0.1 m), as the search box accepts it back."""
        return f"{self.lat:.6f}, {self.lon:.6f}"


def make_point(lat: float, lon: float) -> Point:
    """Validate a latitude/longitude pair and wrap the longitude (Leaflet returns e.g. 361.2 after panning)."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InputError("Latitude and longitude must be finite numbers, e.g. 52.52, 13.40.")
    # Web-mercator imagery stops at about +-85.05 degrees; beyond that there is nothing to fetch.
    if not -85.0 <= lat <= 85.0:
        raise InputError(f"Latitude {lat:g} is outside -85..85 (web-mercator imagery); check the order is lat, lon.")
    if not -180.0 <= lon < 180.0:
        lon = ((lon + 180.0) % 360.0) - 180.0
    return Point(lat=float(lat), lon=float(lon))


def parse_latlon(text: str) -> Point:
    """Parse ``"lat, lon"`` typed in the search box (comma, semicolon or space separated, optional brackets)."""
    match = _LATLON.match(text or "")
    if not match:
        raise InputError(f"Could not read {text!r} as coordinates; type them as 'lat, lon', e.g. 52.52, 13.40.")
    lat, lon = float(match.group(1)), float(match.group(2))
    if not -180.0 <= lon <= 360.0:
        raise InputError(f"Longitude {lon:g} is outside -180..180; type coordinates as 'lat, lon'.")
    return make_point(lat, lon)


def point_from_click(value: object) -> Point | None:
    """The point in st_folium's ``last_clicked`` value (``{"lat": .., "lng": ..}``), or None."""
    if not isinstance(value, dict):
        return None
    try:
        return make_point(float(value["lat"]), float(value["lng"]))
    except (KeyError, TypeError, ValueError):
        return None


def check_audio_upload(name: str, size: int, max_bytes: int = MAX_AUDIO_BYTES) -> None:
    """Refuse uploads of the wrong type or size before anything decodes them."""
    suffix = PurePath(name).suffix.lower().lstrip(".")
    if suffix not in AUDIO_TYPES:
        raise InputError(f"{name!r} is not an audio file this app reads; upload one of: {', '.join(AUDIO_TYPES)}.")
    if size <= 0:
        raise InputError(f"{name!r} is empty; upload a clip of a few seconds.")
    if size > max_bytes:
        raise InputError(
            f"{name!r} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. Trim it to a short clip "
            "(about 10 s is enough for a heatmap)."
        )


def parse_words(text: str) -> list[str]:
    """Words for a word heatmap: comma-separated phrases, blanks dropped."""
    words = [w.strip() for w in (text or "").split(",")]
    words = [w for w in words if w]
    if not words:
        raise InputError("Type at least one word from the caption (several words: separate them with commas).")
    return words


def metadata_overrides(**fields: str | int | None) -> dict[str, int | str]:
    """Metadata overrides for the engine from the sidebar's select boxes.

    ``"auto"`` (or None) leaves the engine's default for that field (the current month, the solar hour
    at the point, the official demo's sources); ``"unknown"`` marks it unknown; anything else is the
    value (month and hour as integers).
    """
    out: dict[str, int | str] = {}
    for name, value in fields.items():
        if value is None or value == AUTO:
            continue
        if value == UNKNOWN:
            out[name] = UNKNOWN
        elif name in ("month", "hour"):
            out[name] = int(value)
        else:
            out[name] = str(value)
    return out
