"""Everything the product downloads, as data, and resolving a ``source`` string to where weights live.

The six official Sat2Sound checkpoints, the demo gallery, the FLAN-T5-large text encoder and
TangoFlux: where each lives on the Hugging Face Hub and roughly how big it is.

A checkpoint source is a registry name (``bingmap_withmeta``), ``hf-hub:<org>/<repo>/<path in repo>``
or a local file (an official Lightning ``.ckpt`` or one of our converted ``.safetensors``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sat2sound_core.common.errors import ConfigError

HF_REPO = "MVRL/sat2sound"
HUB_PREFIX = "hf-hub:"
_MB = 1_000_000


@dataclass(frozen=True)
class CheckpointInfo:
    """One downloadable file: where it lives on the Hub, what it is, roughly how big."""

    name: str
    filename: str
    approx_bytes: int | None
    description: str
    sat_type: str | None = None
    metadata_type: str | None = None
    repo_id: str = HF_REPO
    licence: str = "see the MVRL/sat2sound model card"

    @property
    def has_metadata(self) -> bool:
        return self.metadata_type not in (None, "none")


def _ckpt(name: str, sat_type: str, metadata_type: str, what: str) -> CheckpointInfo:
    with_meta = metadata_type != "none"
    return CheckpointInfo(
        name=name,
        filename=f"sat2sound/{name}.ckpt",
        # fp32 parameters and buffers of the whole model, plus pickle overhead
        approx_bytes=(669 if with_meta else 567) * _MB,
        description=f"{what}, {'with' if with_meta else 'without'} metadata tokens",
        sat_type=sat_type,
        metadata_type=metadata_type,
    )


_GEO_META = "latlong_month_time_asource_tsource"
_SE_META = "latlong_month_time_tsource"

CHECKPOINTS: dict[str, CheckpointInfo] = {
    c.name: c
    for c in (
        _ckpt("bingmap_withmeta", "bingmap", _GEO_META, "GeoSound, Bing Maps 0.6 m/px imagery"),
        _ckpt("bingmap_nometa", "bingmap", "none", "GeoSound, Bing Maps 0.6 m/px imagery"),
        _ckpt("sentinel_withmeta", "sentinel", _GEO_META, "GeoSound, Sentinel-2 10 m/px imagery"),
        _ckpt("sentinel_nometa", "sentinel", "none", "GeoSound, Sentinel-2 10 m/px imagery"),
        _ckpt("SoundingEarth_withmeta", "googleEarth", _SE_META, "SoundingEarth, Google Earth 0.2 m/px imagery"),
        _ckpt("SoundingEarth_nometa", "googleEarth", "none", "SoundingEarth, Google Earth 0.2 m/px imagery"),
    )
}

GALLERY = CheckpointInfo(
    name="GeoSound_gallery_w_bingmap",
    filename="demo/GeoSound_gallery_w_bingmap.h5",
    approx_bytes=None,  # not listed anywhere we could check offline
    description="retrieval gallery of the official demo: captions, audio and text embeddings per sample",
)

DEFAULT_CHECKPOINT = "bingmap_withmeta"

# The text encoder: only the encoder tensors of google/flan-t5-large's model.safetensors are fetched
FLAN_T5_REPO = "google/flan-t5-large"
FLAN_T5_ENCODER_BYTES = 1_365_000_000  # 341.2 M fp32 parameters
FLAN_T5_LICENCE = "Apache-2.0 (google/flan-t5-large)"

# TangoFlux: file -> size in bytes (the Hugging Face listing of declare-lab/TangoFlux)
TANGOFLUX_REPO = "declare-lab/TangoFlux"
TANGOFLUX_FILES: dict[str, int] = {
    "config.json": 252,
    "tangoflux.safetensors": 3_437_051_960,
    "vae.safetensors": 624_464_000,
}
TANGOFLUX_BYTES = sum(TANGOFLUX_FILES.values())  # what a download fetches (≈4.06 GB)
TANGOFLUX_LICENCE = "non-commercial research use only (TangoFlux; Stability AI Community License)"


def list_checkpoints() -> list[CheckpointInfo]:
    """The six official Sat2Sound checkpoints, in registry order."""
    return list(CHECKPOINTS.values())


def get_checkpoint(name: str) -> CheckpointInfo:
    """The registry entry for ``name``; an unknown name raises :class:`ConfigError` listing valid ones."""
    if name in CHECKPOINTS:
        return CHECKPOINTS[name]
    lowered = {k.lower(): k for k in CHECKPOINTS}
    if name.lower() in lowered:
        return CHECKPOINTS[lowered[name.lower()]]
    raise ConfigError(
        f"Unknown checkpoint {name!r}. Valid names: {', '.join(CHECKPOINTS)}; or pass "
        f"'hf-hub:<org>/<repo>/<file>' or the path of a .ckpt/.safetensors file."
    )


@dataclass(frozen=True)
class ResolvedSource:
    """Where a ``source`` string points: a Hub file (``repo_id`` + ``filename``) or a local ``path``.

    ``info`` is the registry entry when the file is one of the official checkpoints (also when it
    was named through ``hf-hub:`` or found by file name), else None.
    """

    kind: Literal["registry", "hub", "local"]
    label: str
    repo_id: str | None = None
    filename: str | None = None
    path: Path | None = None
    info: CheckpointInfo | None = None


def _info_for_filename(filename: str) -> CheckpointInfo | None:
    stem = Path(filename).name
    for suffix in (".ckpt", ".safetensors"):
        stem = stem.removesuffix(suffix)
    return CHECKPOINTS.get(stem)


def resolve_source(source: str | os.PathLike, hf_repo: str = HF_REPO) -> ResolvedSource:
    """Classify ``source`` as a registry name, a ``hf-hub:`` reference or a local file.

    ``hf_repo`` is the repository registry names live in (a mirror can be configured through
    ``SAT2SOUND_HF_REPO``). A string that looks like a path but names no file raises
    :class:`ConfigError`, as does an unknown name (listing the valid ones).
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"A checkpoint source must be a non-empty string or path, got {source!r}.")
    source = source.strip()
    if source.startswith(HUB_PREFIX):
        parts = source[len(HUB_PREFIX) :].strip("/").split("/")
        if len(parts) < 3 or not all(parts):
            raise ConfigError(
                f"{source!r} is not a Hub file reference; write 'hf-hub:<org>/<repo>/<path in repo>', "
                f"e.g. 'hf-hub:{HF_REPO}/sat2sound/bingmap_withmeta.ckpt'."
            )
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        return ResolvedSource("hub", source, repo_id=repo, filename=filename, info=_info_for_filename(filename))
    path = Path(source).expanduser()
    if path.is_file():
        return ResolvedSource("local", str(path), path=path.resolve(), info=_info_for_filename(path.name))
    if source in CHECKPOINTS or source.lower() in {k.lower() for k in CHECKPOINTS}:
        info = get_checkpoint(source)
        return ResolvedSource("registry", info.name, repo_id=hf_repo, filename=info.filename, info=info)
    if path.suffix in (".ckpt", ".safetensors", ".pt", ".pth") or os.sep in source or path.is_dir():
        raise ConfigError(f"Checkpoint file {path} not found (or not a file); check the path.")
    get_checkpoint(source)  # raises with the list of valid names
    raise AssertionError("unreachable")
