"""Locating a gallery: the official demo gallery (downloaded once from the checkpoint repository), a
path, or ``SAT2SOUND_GALLERY``."""

from __future__ import annotations

import os
from pathlib import Path

from sat2sound_core.common.errors import DownloadError
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.gallery.read import Gallery

OFFICIAL_GALLERY = "demo/GeoSound_gallery_w_bingmap.h5"


def official_gallery_path(progress: ProgressCallback | None = None) -> Path:
    """Local path of the official demo gallery, downloading it from the checkpoint repo when needed."""
    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.weights.hub import download, local_copy

    settings = get_settings()
    found = local_copy(OFFICIAL_GALLERY, settings.weights)
    if found is not None:
        return found
    local = settings.weights / OFFICIAL_GALLERY
    if settings.is_offline:
        raise DownloadError(
            f"the demo gallery {OFFICIAL_GALLERY} is not at {local} and downloads are off "
            f"(SAT2SOUND_OFFLINE/HF_HUB_OFFLINE); put the file there or set SAT2SOUND_GALLERY to a gallery file"
        )
    try:
        report(progress, 0, 1, f"downloading {OFFICIAL_GALLERY}")
        got = download(settings.hf_repo, OFFICIAL_GALLERY, settings.weights)
        report(progress, 1, 1, "downloaded")
        return got
    except Exception as exc:  # network, auth, missing file
        raise DownloadError(
            f"could not download {OFFICIAL_GALLERY} from {settings.hf_repo}: {exc}. "
            f"Download it by hand to {local} or set SAT2SOUND_GALLERY."
        ) from None


def resolve_gallery(spec: str | os.PathLike[str] | Gallery | None = None) -> Gallery:
    """A :class:`Gallery` from an object, a path, ``"official"`` or None (``SAT2SOUND_GALLERY`` or the
    official demo gallery)."""
    if isinstance(spec, Gallery):
        return spec
    if spec is None or str(spec) == "":
        from sat2sound_core.common.settings import get_settings

        spec = get_settings().gallery or "official"
    if str(spec) == "official":
        return Gallery(official_gallery_path())
    return Gallery(Path(spec).expanduser())
