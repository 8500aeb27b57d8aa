"""What weights the product uses and whether each is on this machine.

:func:`inventory` is the one list behind ``sat2sound weights list`` and the app's weights panel: the
Sat2Sound checkpoints, the FLAN-T5-large text encoder, the retrieval gallery and TangoFlux, each with
its size, where it is (or None), where it comes from and its licence. It only looks at the file
system (the weights folder, the FLAN-T5 folder, the Hugging Face caches for the encoder's TangoFlux
copy); :func:`download` fetches one entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sat2sound_core.common.progress import ProgressCallback
from sat2sound_core.common.settings import get_settings
from sat2sound_core.weights.hub import approx_size, local_copy
from sat2sound_core.weights.registry import (
    CHECKPOINTS,
    FLAN_T5_ENCODER_BYTES,
    FLAN_T5_LICENCE,
    FLAN_T5_REPO,
    GALLERY,
    TANGOFLUX_BYTES,
    TANGOFLUX_LICENCE,
)

Kind = Literal["checkpoint", "text encoder", "gallery", "synthesis"]
#: what :func:`download` accepts besides checkpoint names
GALLERY_KEY, TEXT_ENCODER_KEY, TANGOFLUX_KEY = "gallery", "t5", "tangoflux"


@dataclass(frozen=True)
class WeightsItem:
    """One thing the product can use: what it is, how big, where it is on this machine, where it comes from."""

    name: str
    kind: Kind
    approx_bytes: int | None
    path: Path | None  # where it is on this machine; None = not here
    source: str  # where it comes from (Hub repo and file, or the local path it was pointed at)
    licence: str
    description: str
    download: str | None  # what :func:`download` accepts to fetch it; None when it cannot be fetched

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def size_text(self) -> str:
        """``"≈669 MB"``, ``"≈4.06 GB"`` or ``"size unknown"``."""
        return approx_size(self.approx_bytes)


def checkpoint_item(name: str) -> WeightsItem:
    """A registry checkpoint (looked for in the weights folder) or a checkpoint file given by path."""
    settings = get_settings()
    info = CHECKPOINTS.get(name)
    if info is None:
        path = Path(name).expanduser()
        return WeightsItem(
            name=path.name, kind="checkpoint", approx_bytes=None, path=path if path.is_file() else None,
            source=str(path), licence="", description="a checkpoint file given by path", download=None,
        )
    return WeightsItem(
        name=info.name, kind="checkpoint", approx_bytes=info.approx_bytes,
        path=local_copy(info.filename, settings.weights), source=f"{settings.hf_repo}: {info.filename}",
        licence=info.licence, description=info.description, download=info.name,
    )


def text_encoder_item() -> WeightsItem:
    """The FLAN-T5-large encoder: in the FLAN-T5 folder, or the copy inside local TangoFlux weights."""
    from sat2sound_core.weights.t5 import find_encoder_weights

    found = find_encoder_weights()
    return WeightsItem(
        name="FLAN-T5-large text encoder", kind="text encoder", approx_bytes=FLAN_T5_ENCODER_BYTES,
        path=found[0].path if found is not None else None,
        source=f"{FLAN_T5_REPO}: the encoder tensors of model.safetensors (or the copy inside TangoFlux)",
        licence=FLAN_T5_LICENCE, description="embeds captions for the text, word and composed heatmaps",
        download=TEXT_ENCODER_KEY,
    )


def gallery_item() -> WeightsItem:
    """The retrieval gallery: ``SAT2SOUND_GALLERY`` when set, else the official demo gallery."""
    settings = get_settings()
    if settings.gallery not in ("", "official"):
        path = Path(settings.gallery).expanduser()
        return WeightsItem(
            name="gallery", kind="gallery", approx_bytes=None, path=path if path.is_file() else None,
            source=f"SAT2SOUND_GALLERY={settings.gallery}", licence="", description="retrieval gallery",
            download=None,
        )
    return WeightsItem(
        name="demo gallery", kind="gallery", approx_bytes=GALLERY.approx_bytes,
        path=local_copy(GALLERY.filename, settings.weights), source=f"{settings.hf_repo}: {GALLERY.filename}",
        licence=GALLERY.licence, description=GALLERY.description, download=GALLERY_KEY,
    )


def tangoflux_item() -> WeightsItem:
    """TangoFlux (``SAT2SOUND_TANGOFLUX``): the folder it names, or its files in a Hugging Face cache."""
    from sat2sound_core.weights.t5 import local_tangoflux

    settings = get_settings()
    local = Path(settings.tangoflux).expanduser()
    if local.is_dir():
        path: Path | None = local
    else:  # a Hub repo id: its snapshot folder in a Hugging Face cache, if it was downloaded
        found = local_tangoflux()
        path = found[0].parent if found is not None else None
    return WeightsItem(
        name="TangoFlux", kind="synthesis", approx_bytes=TANGOFLUX_BYTES, path=path,
        source=settings.tangoflux, licence=TANGOFLUX_LICENCE, description="synthesises new clips from captions",
        download=TANGOFLUX_KEY,
    )


def inventory(checkpoints: Iterable[str] | None = None) -> list[WeightsItem]:
    """The checkpoints (default: the six official ones; names or paths), the text encoder, the gallery
    and TangoFlux, each with whether and where it is on this machine."""
    names = list(CHECKPOINTS) if checkpoints is None else list(checkpoints)
    return [*(checkpoint_item(n) for n in names), text_encoder_item(), gallery_item(), tangoflux_item()]


def download(key: str, progress: ProgressCallback | None = None) -> Path:
    """Fetch one entry by its ``download`` key (a checkpoint name, ``gallery``, ``t5`` or ``tangoflux``)
    with progress; returns where it is. Offline, raises :class:`DownloadError` naming what is missing."""
    settings = get_settings()
    if key == GALLERY_KEY:
        from sat2sound_core.gallery import official_gallery_path

        return official_gallery_path(progress=progress)
    if key == TEXT_ENCODER_KEY:
        from sat2sound_core.weights.t5 import download_encoder, t5_dir

        return download_encoder(t5_dir(), progress=progress)
    if key == TANGOFLUX_KEY:
        from sat2sound_core.synthesis.weights import resolve_weights

        return resolve_weights(settings.tangoflux, progress=progress).folder
    from sat2sound_core.weights.hub import fetch
    from sat2sound_core.weights.registry import resolve_source

    return fetch(resolve_source(key, settings.hf_repo), settings.weights, settings.is_offline, progress=progress)
