"""Where TangoFlux's weights come from and how they are loaded, checked key by key.

A *source* is a Hugging Face repo id (``declare-lab/TangoFlux``), ``hf-hub:org/name[@revision]`` or a
local folder in the official layout (``config.json``, ``tangoflux.safetensors``, ``vae.safetensors``;
optionally ``t5_config.json`` / ``vae_config.json`` / ``vocab.json`` as in the tiny reference model).
Only those three files are fetched from the Hub (≈4.06 GB, :data:`REPO_FILES`) — never the 3.1 GB
``google/flan-t5-large`` checkpoint, because ``tangoflux.safetensors`` carries the T5 encoder. Only
safetensors are read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sat2sound_core.common.errors import WeightsError
from sat2sound_core.common.progress import ProgressCallback
from sat2sound_core.synthesis.components import (
    FLAN_T5_LARGE,
    OOBLECK_DEFAULT,
    TANGOFLUX_CONFIG,
    TangoFluxConfig,
)
from sat2sound_core.weights.hub import fetch_repo_files, human_size
from sat2sound_core.weights.registry import FLAN_T5_REPO, TANGOFLUX_FILES, TANGOFLUX_REPO

log = logging.getLogger(__name__)

DEFAULT_REPO = TANGOFLUX_REPO
# file -> approximate size in bytes (what a download fetches)
REPO_FILES: dict[str, int] = dict(TANGOFLUX_FILES)
TOKENIZER_REPO = FLAN_T5_REPO
TOKENIZER_FILES: dict[str, int] = {
    "tokenizer_config.json": 2_540,
    "special_tokens_map.json": 2_200,
    "spiece.model": 791_656,
    "tokenizer.json": 2_424_064,
}
# The only key the checkpoint lacks: T5's input embedding, tied to (the stored) shared.weight.
EXPECTED_MISSING = frozenset({"text_encoder.encoder.embed_tokens.weight"})


@dataclass(frozen=True)
class WeightsLocation:
    """A resolved weights folder plus the identity used in cache keys (an HF commit or a content hash)."""

    folder: Path
    source: str
    revision: str

    @property
    def tangoflux_file(self) -> Path:
        return self.folder / "tangoflux.safetensors"

    @property
    def vae_file(self) -> Path:
        return self.folder / "vae.safetensors"


def _header_digest(paths: Iterable[Path]) -> str:
    """A cheap content identity: sha256 over each file's size and safetensors header (names, shapes, offsets)
    plus its first and last MiB of data."""
    h = hashlib.sha256()
    for path in paths:
        size = path.stat().st_size
        h.update(f"{path.name}:{size}".encode())
        with path.open("rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _parse_repo(source: str) -> tuple[str, str | None]:
    spec = source.removeprefix("hf-hub:")
    repo, _, revision = spec.partition("@")
    return repo.strip("/"), (revision or None)


def missing_message(repo: str, files: dict[str, int], reason: str) -> str:
    """What to do when TangoFlux files (or the FLAN-T5 tokenizer files it needs) are not here."""
    total = sum(files.values())
    listing = ", ".join(f"{name} ({human_size(size)})" for name, size in files.items())
    return (
        f"TangoFlux weights are not available locally ({reason}). Needed from Hugging Face `{repo}`: "
        f"{listing}; about {human_size(total)} in all. Allow downloads (unset HF_HUB_OFFLINE and "
        f"SAT2SOUND_OFFLINE) or fetch them yourself, e.g. `huggingface-cli download {repo} "
        f"{' '.join(files)} --local-dir DIR`, and set SAT2SOUND_TANGOFLUX=DIR."
    )


def resolve_weights(source: str, progress: ProgressCallback | None = None) -> WeightsLocation:
    """Turn a source (repo id, ``hf-hub:…``, local folder) into a folder holding the official files."""
    path = Path(source).expanduser()
    if path.is_dir():
        for name in ("tangoflux.safetensors", "vae.safetensors"):
            if not (path / name).is_file():
                raise WeightsError(
                    f"{path} has no {name}. A TangoFlux folder holds config.json, tangoflux.safetensors "
                    f"({human_size(REPO_FILES['tangoflux.safetensors'])}) and vae.safetensors "
                    f"({human_size(REPO_FILES['vae.safetensors'])}) from Hugging Face {DEFAULT_REPO}."
                )
        return WeightsLocation(path, str(path), "local-" + _header_digest(
            [path / "tangoflux.safetensors", path / "vae.safetensors"]))
    looks_like_repo = source.startswith("hf-hub:") or (
        source.count("/") == 1 and not source.startswith((".", "/", "~"))
    )
    if not looks_like_repo:
        raise WeightsError(
            f"TangoFlux source {source!r} is neither a folder nor a Hugging Face repo id. Use "
            f"{DEFAULT_REPO!r}, 'hf-hub:org/name', or a folder with tangoflux.safetensors and vae.safetensors."
        )
    repo, revision = _parse_repo(source)
    folder, commit = fetch_repo_files(
        repo, REPO_FILES, revision=revision, progress=progress,
        required=("tangoflux.safetensors", "vae.safetensors"), explain=missing_message,
    )
    return WeightsLocation(folder, f"hf-hub:{repo}", commit)


def read_config(folder: Path) -> TangoFluxConfig:
    """The configurations of a weights folder: ``config.json`` plus optional ``t5_config.json`` /
    ``vae_config.json`` (or the T5 ``config.json`` inside ``text_encoder_name``); defaults are the released model's."""

    def load(name: Path) -> dict[str, Any] | None:
        try:
            return dict(json.loads(name.read_text()))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise WeightsError(f"{name} is not valid JSON ({exc}); re-download it.") from exc

    tangoflux = {**TANGOFLUX_CONFIG, **(load(folder / "config.json") or {})}
    t5 = load(folder / "t5_config.json")
    if t5 is None:
        name = str(tangoflux.get("text_encoder_name", ""))
        t5 = load(folder / name / "config.json") if name and (folder / name).is_dir() else None
    if t5 is None:
        t5 = dict(FLAN_T5_LARGE)
    keep = set(FLAN_T5_LARGE) | {"initializer_factor", "is_decoder", "use_cache"}
    t5 = {k: v for k, v in t5.items() if k in keep}
    vae = {**OOBLECK_DEFAULT, **(load(folder / "vae_config.json") or {})}
    return TangoFluxConfig(tangoflux=tangoflux, t5=t5, vae=vae)


def _file_keys(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({exc}); delete it and re-download.") from exc


def check_keys(
    path: Path, expected: dict[str, tuple[int, ...]], allowed_missing: frozenset[str] = frozenset()
) -> None:
    """Raise :class:`WeightsError` unless the file's keys and shapes are exactly ``expected``; the keys
    in ``allowed_missing`` may be absent (when present, their shapes are checked too)."""
    from sat2sound_core.weights.statedict import key_mismatch

    problem = key_mismatch(expected, _file_keys(path), allowed_missing)
    if problem:
        raise WeightsError(
            f"{path.name} does not match the TangoFlux architecture its config describes: {problem}. "
            "Re-download the file or check that config.json belongs to it."
        )


def expected_shapes(module: nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """``{prefix + key: shape}`` of a module's state dict (works on the meta device)."""
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def load_into(
    module: nn.Module,
    path: Path,
    prefix: str = "",
    *,
    only: tuple[str, ...] | None = None,
    tied: dict[str, str] | None = None,
) -> None:
    """Fill ``module`` (possibly on the meta device) with the tensors of ``path`` under ``prefix``.

    ``only`` restricts the keys (after the prefix) to those starting with one of its entries. Loads with ``assign=True`` so no second copy is allocated; then re-ties ``tied`` (target → source
    attribute paths) and checks no parameter was left on the meta device.
    """
    from safetensors import safe_open

    state: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118
            name = key[len(prefix):]
            if key.startswith(prefix) and (only is None or name.startswith(only)):
                state[name] = fh.get_tensor(key)
    result = module.load_state_dict(state, strict=False, assign=True)
    tied = tied or {}
    missing = set(result.missing_keys) - set(tied)
    if missing or result.unexpected_keys:
        raise WeightsError(f"{path.name}: could not load {sorted(missing)[:5]} / {result.unexpected_keys[:5]}")
    for target, source in tied.items():
        owner_path, _, attr = target.rpartition(".")
        owner = module.get_submodule(owner_path) if owner_path else module
        setattr(owner, attr, module.get_parameter(source))
    left = [n for n, p in [*module.named_parameters(), *module.named_buffers()] if p.is_meta]
    if left:
        raise WeightsError(f"{path.name}: no weights for {left[:5]}")
