"""Download buttons for the current result: GeoTIFF (all heatmaps), PNG, WAV + JSON, captions CSV.

Bytes come from :mod:`sat2sound_core.export`; this module only names files and draws buttons.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import streamlit as st

from sat2sound_core import export

if TYPE_CHECKING:
    import numpy as np
    from streamlit.runtime.state import SessionStateProxy

    from app.page import Controls
    from sat2sound_core.maps.heatmaps import Heatmap
    from sat2sound_core.synthesis.audio import Audio


def _stem(ss: SessionStateProxy, ctl: Controls) -> str:
    p = ss.point
    return f"sat2sound_{p.lat:.5f}_{p.lon:.5f}_s{ctl.scale}"


def current_heatmaps(ss: SessionStateProxy) -> list[Heatmap]:
    """Every heatmap computed for the current result in this session (one GeoTIFF band each)."""
    rid = id(ss.result)
    out: list[Heatmap] = []
    for key, heat in ss.heatmaps.items():
        if key[0] == rid and hasattr(heat, "values") and hasattr(heat, "transform"):
            out.append(heat)
    return out


def render(ss: SessionStateProxy, ctl: Controls, heat: object) -> None:
    """Draw the download buttons. Files are built only when a button is pressed (Streamlit runs the
    callable in its own thread), so drawing the tab costs nothing on every click."""
    stem = _stem(ss, ctl)
    heats = current_heatmaps(ss)
    concept = next((h for k, h in ss.heatmaps.items() if k[0] == id(ss.result) and k[1] == "concept"), None)
    context = {"lat": ss.point.lat, "lon": ss.point.lon, "scale": ctl.scale, "checkpoint": ctl.checkpoint,
               "provider": ctl.provider, "metadata": ctl.metadata()}
    chip, metadata, checkpoint = ss.result.chip, ss.result.metadata, ss.result.checkpoint
    if heats or concept is not None:

        def tif() -> bytes:
            return export.geotiff_bytes(
                heats, chip=chip, concept_map=concept, checkpoint=checkpoint, scale=ctl.scale, metadata=metadata,
                extra_tags={"provider_choice": ctl.provider},
            )

        st.download_button(
            f"GeoTIFF ({len(heats)} heatmap band(s){' + concepts' if concept is not None else ''})",
            tif, file_name=f"{stem}.tif", mime="image/tiff", key="dl_tif", on_click="ignore",
        )
    else:
        st.caption("Make a heatmap first (pick a kind in the sidebar); every heatmap becomes a GeoTIFF band.")
    from sat2sound_core.maps.heatmaps import Heatmap

    shown = getattr(heat, "heatmap", None) if heat is not None and not hasattr(heat, "transform") else heat
    if isinstance(shown, Heatmap):

        def png() -> bytes:
            return export.heatmap_png_bytes(shown, base=getattr(chip, "image", None))

        st.download_button("PNG of the heatmap on the chip", png, file_name=f"{stem}.png", mime="image/png",
                           key="dl_png", on_click="ignore")
    if ss.hits:
        st.download_button("Captions (CSV)", export.hits_csv_bytes(ss.hits), file_name=f"{stem}_captions.csv",
                           mime="text/csv", key="dl_csv", on_click="ignore")
    for i, (key, audio) in enumerate(sorted(ss.synth_audio.items(), key=lambda kv: str(kv[0]))):
        samples, rate = audio_arrays(audio)
        kind, caption = key[0], key[-1]
        st.download_button(f"WAV: {kind} — {caption[:40]}", export.wav_bytes(samples, rate),
                           file_name=f"{stem}_{kind}_{i}.wav", mime="audio/wav", key=f"dl_wav_{i}", on_click="ignore")
        extra = getattr(audio, "metadata", None) or {}
        sidecar = {"caption": caption, "source": kind, "sample_rate": rate, **context, **extra}
        st.download_button(f"JSON sidecar {i}", json.dumps(sidecar, indent=2, default=str).encode(),
                           file_name=f"{stem}_{kind}_{i}.json", mime="application/json", key=f"dl_json_{i}",
                           on_click="ignore")


def audio_arrays(audio: Audio | tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """(samples, rate) of a gallery clip (a (samples, rate) pair) or a synthesised ``Audio``."""
    if isinstance(audio, tuple):
        return audio[0], int(audio[1])
    return audio.samples, int(audio.sample_rate)
