"""Thin glue between the page and the library APIs: provider choices, basemap, footprints, audio.

Nothing here computes model outputs; it picks the right :mod:`sat2sound_core` call (imagery through
:mod:`sat2sound_core.imagery`, never ``tiles`` directly) for what the user chose and shapes the answer for a widget. API keys stay on the server: a provider
that needs a key is used for the model's imagery, but the browser's basemap then comes from a keyless
provider (the key would otherwise end up in tile URLs sent to the browser). The same holds for a custom
``SAT2SOUND_TILE_URL`` that carries credentials (``user:pass@host``) or a query parameter that may be a
token (``?api_key=…``): the model still reads it on the server, the browser gets the keyless basemap and a
notice saying why (:func:`browser_safe_template`).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import streamlit as st

from app.config import AppConfig
from app.map_view import Basemap
from sat2sound_core import imagery

if TYPE_CHECKING:
    from sat2sound_core.maps.heatmaps import Heatmap
    from sat2sound_core.preprocess.audio import AudioFile
    from sat2sound_core.synthesis import Audio
    from tiles import Chip

AUTO = "auto"
CUSTOM = imagery.CUSTOM
#: the keyless basemap shown when the chosen provider needs a key or has no web tiles
DISPLAY_FALLBACK = "esri-world-imagery"


@dataclass(frozen=True)
class ProviderChoice:
    """One entry of the provider select box: label and the terms/attribution line shown under it."""

    label: str
    terms: str


def _family(checkpoint: str) -> str:
    low = checkpoint.lower()
    if "sentinel" in low:
        return "sentinel"
    if "soundingearth" in low:
        return "googleEarth"
    return "bingmap"


# Scales each imagery family was trained with (sat2sound_core.model.config.ALLOWED_SCALES; a test keeps
# them equal). Kept here so drawing the page does not import torch before the map is shown.
ALLOWED_SCALES: dict[str, tuple[int, ...]] = {"bingmap": (1, 3, 5), "sentinel": (1, 3, 5), "googleEarth": (1,)}


def allowed_scales(checkpoint: str) -> list[int]:
    """Scales the checkpoint's family was trained with (SoundingEarth: 1 only)."""
    return list(ALLOWED_SCALES.get(_family(checkpoint), (1, 3, 5)))


def provider_choices(cfg: AppConfig) -> dict[str, ProviderChoice]:
    """Provider select-box entries: the custom source when configured, 'auto', then the registry."""
    out: dict[str, ProviderChoice] = {}
    if cfg.custom_tiles:
        out[CUSTOM] = ProviderChoice("Custom tiles (SAT2SOUND_TILE_URL)", cfg.tile_attribution)
    out[AUTO] = ProviderChoice(
        "Auto (the checkpoint family's default)",
        "Bing-type checkpoints: Esri World Imagery; Sentinel: EOX Sentinel-2 cloudless 2020.",
    )
    for p in imagery.list_providers():
        out[p.name] = ProviderChoice(p.name, f"{p.notes} Attribution: {p.attribution}")
    return out


def engine_provider(choice: str) -> str | None:
    """What to pass as ``provider=`` to the engine: None (the engine then uses SAT2SOUND_TILE_URL when
    set, else the checkpoint family's default) or a registry name."""
    return None if choice in (AUTO, CUSTOM) else choice


def resolved_provider(choice: str, checkpoint: str) -> imagery.ProviderInfo | None:
    """The provider the choice means for this checkpoint (None for the custom source, or when the
    checkpoint's family has no default)."""
    if choice == CUSTOM:
        return None
    name = imagery.default_provider(_family(checkpoint)) if choice == AUTO else choice
    return imagery.provider_info(name) if name else None


_PLACEHOLDER = re.compile(r"\{[-a-z]+\}")


def browser_safe_template(url: str) -> bool:
    """Whether an XYZ template may be sent to the browser: no userinfo (``user:pass@``), no ``{key}``
    and no query parameter with a value other than tile placeholders (``?api_key=…``, ``?token=…``,
    ``?style=…`` alike: a value cannot be told apart from a secret, so none is sent)."""
    parts = urlsplit(url)
    if "@" in parts.netloc or "{key}" in url:
        return False
    query = parse_qsl(parts.query, keep_blank_values=True)
    return all(_PLACEHOLDER.fullmatch(value) or not value for _, value in query)


def basemap(cfg: AppConfig, choice: str, checkpoint: str) -> Basemap:
    """The browser's basemap for the chosen provider (keyless; see the module docstring)."""
    notice = ""
    if choice == CUSTOM:
        if browser_safe_template(cfg.tile_url):
            return Basemap("custom", cfg.tile_url, cfg.tile_attribution, cfg.tile_max_zoom)
        notice = (
            "SAT2SOUND_TILE_URL carries credentials or query parameters (an API key?), which must not reach "
            "the browser: the map shows a keyless basemap instead, while the analysis still uses your tiles. "
            "To see them on the map, serve them without a key (e.g. behind a local proxy)."
        )
        provider: imagery.ProviderInfo | None = None
    else:
        provider = resolved_provider(choice, checkpoint)
    if provider is None or provider.needs_key or provider.url_template is None:
        provider = imagery.provider_info(DISPLAY_FALLBACK)
    return Basemap(provider.name, str(provider.url_template), provider.attribution, provider.max_zoom, notice)


def footprints(chip: Chip, scales: list[int]) -> dict[int, list[list[float]]]:
    """[[s, w], [n, e]] of every scale's chip footprint around the click."""
    out: dict[int, list[list[float]]] = {}
    for s, polygon in chip.footprints(tuple(scales)).items():
        w, south, e, n = polygon.bounds
        out[int(s)] = [[float(south), float(w)], [float(n), float(e)]]
    return out


def span_m(bounds: list[list[float]]) -> float:
    """East-west ground width of a [[s, w], [n, e]] box in metres (for choosing a zoom)."""
    (s, w), (n, e) = bounds
    lat = math.radians((s + n) / 2)
    return abs(e - w) * 111_320.0 * max(math.cos(lat), 1e-6)


def decode_audio(data: bytes) -> tuple[AudioFile, int]:
    """Open an uploaded clip with the model's loader (raises InputError for bad files); its windows are
    decoded only when a map needs them, so memory stays bounded whatever the recording's length."""
    from sat2sound_core.preprocess.audio import open_audio

    audio = open_audio(data)
    return audio, audio.sample_rate


def chip_with_grid(chip: Chip, heat: Heatmap | None = None, size: int = 448, grid: int = 14) -> bytes:
    """PNG of the chip with its patch grid drawn on it (and the heatmap blended in, when there is one)."""
    from PIL import Image, ImageDraw

    from sat2sound_core import export

    base = np.asarray(chip.image, dtype=np.uint8)[..., :3]
    if heat is not None:
        img = Image.open(io.BytesIO(export.heatmap_png_bytes(heat, size=size, base=base))).convert("RGB")
    else:
        img = Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    for i in range(1, grid):
        t = round(i * size / grid)
        draw.line([(t, 0), (t, size)], fill=(255, 255, 255), width=1)
        draw.line([(0, t), (size, t)], fill=(255, 255, 255), width=1)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def chip_caption(chip: Chip) -> str:
    """One line under the chip preview: pixel size, ground resolution, attribution."""
    parts = [f"{chip.width}x{chip.height} px"]
    if chip.ground_resolution:
        parts.append(f"{float(chip.ground_resolution):.2f} m/px")
    parts.append(chip.attribution)
    return " · ".join(p for p in parts if p)


def play(audio: tuple[np.ndarray, int] | Audio, label: str) -> None:
    """An audio player for a gallery clip ((samples, rate)) or a synthesised ``Audio``."""
    from app.downloads import audio_arrays
    from sat2sound_core import export

    samples, rate = audio_arrays(audio)
    st.caption(label)
    st.audio(export.wav_bytes(samples, rate), format="audio/wav")
