"""The "Weights and galleries" panel: what is on disk, what each feature needs, how to get the rest.

Presence and sizes come from the checkpoint registry and the product settings; downloads go through
the library's own downloader (with a progress bar). When downloads are impossible (offline switch) the
panel says so and names the environment variables that point at local copies. Nothing here blocks the
map: the panel is drawn inside a collapsed expander, computed only once it is opened (the presence
checks import torch), and only reads the file system.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from sat2sound_core.common.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One thing a feature needs: its name, what uses it, where it is (None = missing), rough size."""

    name: str
    needed_for: str
    path: Path | None
    approx_bytes: int | None
    download: str | None  # registry name the downloader accepts, or None when it cannot be fetched


def _fmt_size(n: int | None) -> str:
    return "size unknown" if not n else f"≈{n / 1e9:.2f} GB" if n >= 1e8 else f"≈{n / 1e6:.0f} MB"


def checkpoint_path(name: str) -> Path | None:
    """The local file for a checkpoint name or path, or None when it still has to be downloaded."""
    from sat2sound_core.weights.hub import local_copy
    from sat2sound_core.weights.registry import CHECKPOINTS

    info = CHECKPOINTS.get(name)
    if info is None:
        p = Path(name).expanduser()
        return p if p.is_file() else None
    return local_copy(info.filename, get_settings().weights)


def items(checkpoint: str) -> list[Item]:
    """Status of the active checkpoint, the gallery and TangoFlux."""
    from sat2sound_core.weights.registry import CHECKPOINTS, GALLERY

    settings = get_settings()
    info = CHECKPOINTS.get(checkpoint)
    out = [
        Item(
            f"checkpoint {Path(checkpoint).name}",
            "the map's heatmaps, captions and concepts",
            checkpoint_path(checkpoint),
            info.approx_bytes if info else None,
            checkpoint if info else None,
        )
    ]
    gallery = Path(settings.gallery).expanduser() if settings.gallery else None
    out.append(
        Item(
            "retrieval gallery",
            "top-k captions, gallery audio, concept examples",
            gallery if gallery is not None and gallery.is_file() else _cached_gallery(),
            GALLERY.approx_bytes,
            None if gallery is not None else "gallery",
        )
    )
    out.append(
        Item(
            "FLAN-T5-large text encoder",
            "text, word and composed heatmaps",
            _t5_path(),
            1_365_000_000,
            "t5",
        )
    )
    tango = Path(settings.tangoflux).expanduser()
    out.append(
        Item(
            "TangoFlux (non-commercial licence)",
            "the 'Synthesise' buttons",
            tango if tango.is_dir() else None,
            3_000_000_000,
            "tangoflux",
        )
    )
    return out


def _t5_path() -> Path | None:
    from sat2sound_core.common.errors import Sat2SoundError
    from sat2sound_core.weights.t5 import locate_encoder_weights

    try:
        weights, _ = locate_encoder_weights(download=False)
    except Sat2SoundError:
        return None
    return Path(weights.path)


def _cached_gallery() -> Path | None:
    from sat2sound_core.gallery import OFFICIAL_GALLERY

    weights = get_settings().weights
    return next((p for p in (weights / OFFICIAL_GALLERY, weights / Path(OFFICIAL_GALLERY).name) if p.is_file()), None)


def render_offline_notice() -> None:
    """The offline warning, when downloads are switched off (cheap: reads the settings only)."""
    if get_settings().is_offline:
        st.warning(
            "Offline mode (SAT2SOUND_OFFLINE or HF_HUB_OFFLINE is set): nothing will be downloaded. "
            "Put files under SAT2SOUND_WEIGHTS_DIR or point SAT2SOUND_APP_CHECKPOINT / SAT2SOUND_GALLERY / "
            "SAT2SOUND_TANGOFLUX at local copies."
        )


def render(checkpoint: str, offline_notice: bool = True) -> None:
    """Draw the panel (see the module docstring); ``offline_notice=False`` when the caller drew it."""
    settings = get_settings()
    if offline_notice:
        render_offline_notice()
    for item in items(checkpoint):
        icon = "✅" if item.path is not None else "⬜"
        st.markdown(f"{icon} **{item.name}** — {_fmt_size(item.approx_bytes)}  \nneeded for {item.needed_for}")
        if item.path is not None:
            st.caption(str(item.path))
        elif item.download and not settings.is_offline:
            if st.button(f"Download {item.name}", key=f"dl_weights_{item.download}"):
                _download(item)
        elif item.download is None:
            st.caption("Set the environment variable named in docs/app.md to a local copy.")


def _download(item: Item) -> None:
    bar = st.progress(0.0, text=f"Downloading {item.name}…")

    def progress(done: float, total: float, message: str = "") -> None:
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        bar.progress(frac, text=f"{item.name}: {done / 1e6:.0f} / {total / 1e6:.0f} MB {message}")

    assert item.download is not None
    settings = get_settings()
    path: Any
    if item.download == "gallery":
        from sat2sound_core.gallery import official_gallery_path

        path = official_gallery_path(progress=progress)
    elif item.download == "t5":
        from sat2sound_core.weights.t5 import download_encoder, t5_dir

        path = download_encoder(t5_dir(), progress=progress)
    elif item.download == "tangoflux":
        from app import resources

        resources.get_synthesizer(settings.tangoflux, settings.device, settings.precision, _progress=progress)
        path = settings.tangoflux
    else:
        from sat2sound_core.weights.hub import fetch
        from sat2sound_core.weights.registry import resolve_source

        source = resolve_source(item.download, settings.hf_repo)
        path = fetch(source, settings.weights, settings.is_offline, progress=progress)
    bar.progress(1.0, text=f"{item.name}: done ({path})")
