"""The "Weights and galleries" panel: what is on disk, what each feature needs, how to get the rest.

What is present, how big it is and how to fetch it come from the library's weights inventory
(:func:`sat2sound_core.weights.inventory.inventory`, the list ``sat2sound weights list`` prints too);
downloads go through its downloader (with a progress bar). When downloads are impossible (offline
switch) the panel says so and names the environment variables that point at local copies. Nothing
here blocks the map: the panel is drawn inside a collapsed expander, computed only once it is opened
(the presence checks import torch), and only reads the file system. It shows file names and sizes,
never the server's absolute paths (the page is seen by every user of the server).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from sat2sound_core.common.settings import get_settings

if TYPE_CHECKING:
    from sat2sound_core.weights.inventory import WeightsItem

log = logging.getLogger(__name__)

# what the panel calls each kind of entry, and which features need it
_NEEDED_FOR = {
    "checkpoint": "the map's heatmaps, captions and concepts",
    "gallery": "top-k captions, gallery audio, concept examples",
    "text encoder": "text, word and composed heatmaps",
    "synthesis": "the 'Synthesise' buttons",
}


@dataclass(frozen=True)
class Item:
    """One inventory entry as the panel shows it: its name here and what uses it."""

    name: str
    needed_for: str
    entry: WeightsItem

    @property
    def path(self) -> Path | None:
        """Where it is on this machine (None = missing)."""
        return self.entry.path

    @property
    def approx_bytes(self) -> int | None:
        return self.entry.approx_bytes

    @property
    def download(self) -> str | None:
        """The key the downloader accepts, or None when it cannot be fetched (set a variable instead)."""
        return self.entry.download


def _label(entry: WeightsItem, checkpoint: str) -> str:
    if entry.kind == "checkpoint":
        return f"checkpoint {Path(checkpoint).name}"
    if entry.kind == "gallery":
        return "retrieval gallery"
    if entry.kind == "synthesis":
        return "TangoFlux (non-commercial licence)"
    return entry.name


def items(checkpoint: str) -> list[Item]:
    """Status of the active checkpoint, the text encoder, the gallery and TangoFlux."""
    from sat2sound_core.weights.inventory import inventory

    return [Item(_label(e, checkpoint), _NEEDED_FOR[e.kind], e) for e in inventory(checkpoints=[checkpoint])]


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
        st.markdown(f"{icon} **{item.name}** — {item.entry.size_text}  \nneeded for {item.needed_for}")
        if item.path is not None:
            st.caption(f"on the server: {item.path.name}")  # the name only: server paths stay private
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
    path: Path | str
    if item.entry.kind == "synthesis":  # load it too, into the process-wide cache the page uses
        from app import resources

        resources.get_synthesizer(settings.tangoflux, settings.device, settings.precision, _progress=progress)
        path = settings.tangoflux
    else:
        from sat2sound_core.weights.inventory import download

        path = download(item.download, progress=progress)
    bar.progress(1.0, text=f"{item.name}: done ({Path(path).name})")
