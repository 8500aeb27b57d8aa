"""Fetch Sat2Sound weights and read them safely: official Lightning ``.ckpt`` and our safetensors cache.

Official checkpoints are PyTorch pickles. They are read with ``torch.load(weights_only=True)``,
whose unpickler only builds tensors and plain containers; on top of that, Lightning's
``AttributeDict`` and argparse's ``Namespace`` (the pickled hyper-parameters), paths, defaultdicts
and numpy scalars/arrays (loop and callback state) are admitted as plain values. Anything else (a
pickle that asks for ``os.system``, a class from an unknown package) is refused before it can run.
No Lightning install is needed.

A converted copy is cached as safetensors (config and source hash in its metadata), so later loads
skip the pickle and are memory-mapped.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import logging
import os
import pickle
import re
import struct
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sat2sound_core.common.errors import DownloadError, WeightsError
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.weights.registry import CHECKPOINTS, CheckpointInfo, ResolvedSource

log = logging.getLogger(__name__)

FORMAT_TAG = "sat2sound-safetensors-v1"

# --------------------------------------------------------------------------------------------------
# Restricted unpickling


def _path_as_str(*parts: str) -> str:
    return os.path.join(*parts) if parts else ""


def _defaultdict_as_dict(*_factory: Any) -> OrderedDict:
    return OrderedDict()


def _numpy_globals() -> list[Any]:
    """numpy scalars, arrays and dtypes (Lightning callbacks/loops may hold them): rebuilt from bytes, no code."""
    import numpy as np

    core = importlib.import_module("numpy._core.multiarray")
    out: list[Any] = [np.ndarray, np.dtype]
    for mod in ("numpy.core", "numpy._core"):
        out += [(core.scalar, f"{mod}.multiarray.scalar"), (core._reconstruct, f"{mod}.multiarray._reconstruct")]
    out += [(cls, f"numpy.dtypes.{name}") for name, cls in vars(np.dtypes).items() if isinstance(cls, type)]
    return out


# Fully qualified names a Lightning checkpoint may legitimately reference besides tensors and
# containers, mapped to the harmless type built in their place. Lightning's AttributeDict becomes an
# OrderedDict (torch's restricted unpickler fills only exact dict types); Namespace stays a
# Namespace (a bag of attributes) and is turned into a dict by _plain.
_ALLOWED_EXTRA_GLOBALS: list[Any] = [
    (OrderedDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (OrderedDict, "lightning.pytorch.utilities.parsing.AttributeDict"),
    (OrderedDict, "lightning_fabric.utilities.data.AttributeDict"),
    (OrderedDict, "lightning.fabric.utilities.data.AttributeDict"),
    argparse.Namespace,
    (_path_as_str, "pathlib.PosixPath"),
    (_path_as_str, "pathlib.WindowsPath"),
    (_path_as_str, "pathlib.Path"),
    # a defaultdict (loop/callback state) becomes a plain dict; its factory types are inert here
    (_defaultdict_as_dict, "collections.defaultdict"),
    (int, "builtins.int"),
    (float, "builtins.float"),
    (list, "builtins.list"),
    (dict, "builtins.dict"),
    *_numpy_globals(),
]


def _plain(obj: Any) -> Any:
    """Namespaces and dict-likes (OrderedDict stand-ins) become plain dicts, recursively."""
    if isinstance(obj, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, dict) and not isinstance(obj, torch.Tensor):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


def _unsafe_globals(path: Path) -> list[str]:
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # the scan is only for the message
        return []
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in _ALLOWED_EXTRA_GLOBALS}
    return [g for g in found if g not in allowed]


def safe_torch_load(path: Path) -> Any:
    """``torch.load`` that only builds tensors, containers and the admitted hyper-parameter types.

    Raises :class:`WeightsError` for a truncated/corrupt file or a pickle that references anything
    else (naming what it asked for); nothing in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    if path.stat().st_size == 0:
        raise WeightsError(f"Checkpoint {path} is empty (0 bytes); delete it and download it again.")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError:
        is_zip = False
    with open(path, "rb") as f:
        head = f.read(4)
    if not is_zip and head[:2] == b"PK":
        raise WeightsError(
            f"Checkpoint {path} is truncated or corrupt (its zip directory is missing); "
            "delete it and download it again."
        )
    try:
        with torch.serialization.safe_globals(_ALLOWED_EXTRA_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        names = _unsafe_globals(path) if is_zip else []
        what = f" It references {', '.join(names)}." if names else ""
        raise WeightsError(
            f"Refused to load {path}: it is not a plain weights file — its pickle asks for code or "
            f"classes that a Sat2Sound checkpoint never needs, so it was not unpickled.{what} Only "
            "use checkpoints from a source you trust (the official MVRL/sat2sound files load fine)."
        ) from exc
    except Exception as exc:  # torch raises many types for damaged bytes (RuntimeError, EOFError, IndexError …)
        raise WeightsError(
            f"Checkpoint {path} is truncated or corrupt ({exc.__class__.__name__}: {exc}); "
            "delete it and download it again."
        ) from exc
    return _plain(obj)


# --------------------------------------------------------------------------------------------------
# Official checkpoints: reading and inferring the configuration

_MARKERS = ("fdt.space_dict", "satmae_backbone.backbone.", "audio_encoder.model.audio_enc.")
_META_WORDS = {  # metadata sub-word -> key that exists only when that token is enabled
    "latlong": "sat_encoder.meta_fuser.meta_embed.location_fc.fc1.weight",
    "month": "sat_encoder.meta_fuser.meta_embed.month_fc.fc1.weight",
    "time": "sat_encoder.meta_fuser.meta_embed.time_fc.fc1.weight",
    "asource": "sat_encoder.meta_fuser.meta_embed.audio_source_fc.source_embed.weight",
    "tsource": "sat_encoder.meta_fuser.meta_embed.caption_source_fc.source_embed.weight",
}


@dataclass(frozen=True)
class OfficialCheckpoint:
    """The parts of an official Lightning checkpoint that matter: its state_dict and hyper-parameters."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any] = field(default_factory=dict)


def _looks_like_sat2sound(keys: list[str]) -> bool:
    return all(any(k == m or k.startswith(m) for k in keys) for m in _MARKERS)


def read_official_checkpoint(path: Path) -> OfficialCheckpoint:
    """Read an official Sat2Sound ``.ckpt`` safely and check it is one.

    Raises :class:`WeightsError` when the file is unsafe, truncated, or holds another model (e.g. a
    SatMAE or MGA-CLAP backbone, or an unrelated network).
    """
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict; it is not a Sat2Sound checkpoint.")
    state = obj.get("state_dict")
    if state is None and all(isinstance(v, torch.Tensor) for v in obj.values()) and obj:
        state = obj  # a bare state_dict saved with torch.save
    if not isinstance(state, Mapping):
        hint = ""
        if "model" in obj:
            hint = " It looks like a backbone checkpoint ({'model': ...}: SatMAE or MGA-CLAP), not Sat2Sound."
        raise WeightsError(f"{path} has no 'state_dict'.{hint} Give one of the sat2sound/*.ckpt files.")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for wrapper in ("model.", "module."):  # re-saved from a wrapper module or DataParallel
        if not _looks_like_sat2sound(list(tensors)) and tensors and all(k.startswith(wrapper) for k in tensors):
            tensors = {k[len(wrapper):]: v for k, v in tensors.items()}
    if not _looks_like_sat2sound(list(tensors)):
        missing = [m for m in _MARKERS if not any(k == m or k.startswith(m) for k in tensors)]
        raise WeightsError(
            f"{path} is not a Sat2Sound checkpoint: it has no {', '.join(missing)} weights "
            f"(first keys: {', '.join(list(tensors)[:3]) or 'none'}). Give one of the sat2sound/*.ckpt files."
        )
    hp = obj.get("hyper_parameters") or {}
    return OfficialCheckpoint(path=Path(path), state_dict=dict(tensors), hyper_parameters=dict(hp))


def metadata_type_from_keys(keys: Iterator[str] | list[str]) -> str:
    """The official ``metadata_type`` string implied by which metadata embedders a state_dict has."""
    present = set(keys)
    words = [w for w in ("latlong", "month", "time", "asource", "tsource") if _META_WORDS[w] in present]
    return "_".join(words) if words else "none"


def infer_config_fields(ckpt: OfficialCheckpoint, info: CheckpointInfo | None = None) -> dict[str, Any]:
    """``ModelConfig`` fields (name, sat_type, metadata_type, widths) for an official checkpoint.

    The state_dict is the truth for what exists (metadata tokens, codebook and projector widths);
    ``sat_type`` is read from the hyper-parameters, else from the registry entry. A disagreement
    between hyper-parameters and weights is logged and the weights win.
    """
    sd, hp = ckpt.state_dict, ckpt.hyper_parameters
    run_name = hp.get("run_name") if isinstance(hp.get("run_name"), str) else None
    if info is None and run_name in CHECKPOINTS:
        info = CHECKPOINTS[run_name]
    meta = metadata_type_from_keys(list(sd))
    hp_meta = hp.get("metadata_type")
    if isinstance(hp_meta, str) and set(hp_meta.split("_")) - {"none", ""} != set(meta.split("_")) - {"none"}:
        log.warning(
            "%s: hyper_parameters say metadata_type=%r but the weights have %r; using the weights",
            ckpt.path.name, hp_meta, meta,
        )
    sat_type = hp.get("sat_type") or (info.sat_type if info else None)
    if not sat_type:
        raise WeightsError(
            f"{ckpt.path} does not say which imagery it was trained on (no hyper_parameters.sat_type). "
            "Name the file after its registry entry (e.g. bingmap_withmeta.ckpt) so it can be identified."
        )
    codebook = sd["fdt.space_dict"]
    fields: dict[str, Any] = {
        "name": info.name if info else (run_name or ckpt.path.name.split(".")[0]),
        "sat_type": str(sat_type),
        "metadata_type": meta,
        "codebook_size": int(codebook.shape[0]),
        "codebook_dim": int(codebook.shape[1]),
    }
    proj = sd.get("satmae_backbone.projector.linear2.weight")
    if proj is not None:
        fields["fc_dim"] = int(proj.shape[0])
    for key in ("codebook_size", "codebook_dim", "fc_dim"):
        if key in hp and key in fields and int(hp[key]) != fields[key]:
            log.warning("%s: hyper_parameters %s=%s but weights have %s", ckpt.path.name, key, hp[key], fields[key])
    return fields


# --------------------------------------------------------------------------------------------------
# Hashing and the converted safetensors cache


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def quick_fingerprint(path: Path, edge: int = 4 << 20) -> str:
    """A cheap content fingerprint (size + first and last 4 MiB) to find a file's converted copy."""
    size = Path(path).stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(edge))
        if size > edge:
            f.seek(max(edge, size - edge))
            h.update(f.read(edge))
    return h.hexdigest()[:20]


def is_safetensors(path: Path) -> bool:
    """True when the file starts like a safetensors file (u64 header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < (100 << 20) and head[8:9] == b"{"


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_converted(
    target: Path, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], source_sha256: str, source: str
) -> Path:
    """Write our safetensors copy atomically: tensors plus config/source metadata."""
    from safetensors.torch import save_file

    metadata = {
        "format": FORMAT_TAG,
        "config": json.dumps(dict(config), sort_keys=True),
        "source_sha256": source_sha256,
        "source": source,
    }
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return target


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """Our safetensors copy: the module's state_dict (memory-mapped) and its config."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    source_sha256: str
    source: str


def read_converted(path: Path) -> ConvertedCheckpoint:
    """Read one of our safetensors files; raises :class:`WeightsError` for anything else or a broken file."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is truncated or corrupt ({exc}); delete it (it is re-created from the .ckpt).") from exc
    if meta.get("format") != FORMAT_TAG or "config" not in meta:
        raise WeightsError(
            f"{path} is a safetensors file but not a converted Sat2Sound checkpoint (no '{FORMAT_TAG}' "
            "metadata). Give an official .ckpt or a file written by this product."
        )
    return ConvertedCheckpoint(
        path=Path(path),
        state_dict=state,
        config=json.loads(meta["config"]),
        source_sha256=meta.get("source_sha256", ""),
        source=meta.get("source", ""),
    )


def converted_cache_path(source_file: Path, cache_dir: Path) -> Path:
    """Where the converted copy of ``source_file`` lives (named by a content fingerprint)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source_file).name.split(".")[0])
    return cache_dir / f"{stem}-{quick_fingerprint(source_file)}.safetensors"


# --------------------------------------------------------------------------------------------------
# Downloading


def _size_text(n: int | None) -> str:
    return f"≈{n / 1e9:.2f} GB" if n and n >= 1e9 else (f"≈{n / 1e6:.0f} MB" if n else "size unknown")


def _progress_tqdm(progress: ProgressCallback | None, label: str) -> type | None:
    if progress is None:
        return None
    from tqdm.auto import tqdm

    class _Forward(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = float(kwargs.get("initial", 0) or 0)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += float(n or 0)
            report(progress, self._done, float(self.total or 0), f"downloading {label}")
            return None

    return _Forward


def local_candidates(filename: str, weights_dir: Path) -> list[Path]:
    """Files in the weights directory that count as a local copy of a Hub file."""
    return [weights_dir / filename, weights_dir / Path(filename).name]


def fetch(
    resolved: ResolvedSource,
    weights_dir: Path,
    offline: bool,
    progress: ProgressCallback | None = None,
    endpoint: str | None = None,
) -> Path:
    """The local file for ``resolved``: the local path, a copy in ``weights_dir`` or in a Hugging Face
    cache (``weights_dir/hf``, then the user's), or a Hub download.

    Downloads go through ``huggingface_hub.hf_hub_download`` into ``weights_dir`` (resumable: an
    interrupted download continues where it stopped). When ``offline`` (``SAT2SOUND_OFFLINE`` or
    ``HF_HUB_OFFLINE``) only local copies and the Hugging Face cache are used, and a missing file
    raises :class:`DownloadError` saying what to download, how big it is and where to put it.
    """
    if resolved.kind == "local":
        assert resolved.path is not None
        return resolved.path
    assert resolved.repo_id and resolved.filename
    for cand in local_candidates(resolved.filename, weights_dir):
        if cand.is_file():
            log.info("using local weights %s", cand)
            return cand
    from huggingface_hub import hf_hub_download

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None  # read per call: mirrors, loopback tests
    size = resolved.info.approx_bytes if resolved.info else None
    for cache in (weights_dir / "hf", None):  # the product's HF cache, then the user's: no re-download
        try:
            return Path(hf_hub_download(resolved.repo_id, resolved.filename, cache_dir=cache,
                                        local_files_only=True, endpoint=endpoint))
        except Exception:  # not cached there
            continue
    if offline:
        url = f"https://huggingface.co/{resolved.repo_id}/resolve/main/{resolved.filename}"
        raise DownloadError(
            f"{resolved.label} is not available offline. Download {resolved.filename} "
            f"({_size_text(size)}) from {url} and put it at {weights_dir / resolved.filename}, "
            "or allow downloads (unset HF_HUB_OFFLINE and SAT2SOUND_OFFLINE)."
        )
    log.info("downloading %s/%s (%s) into %s", resolved.repo_id, resolved.filename, _size_text(size), weights_dir)
    try:
        path = hf_hub_download(
            resolved.repo_id,
            resolved.filename,
            local_dir=weights_dir,
            endpoint=endpoint,
            tqdm_class=_progress_tqdm(progress, resolved.filename),
        )
    except Exception as exc:
        raise DownloadError(
            f"Could not download {resolved.filename} from the Hugging Face repo {resolved.repo_id} "
            f"({exc.__class__.__name__}: {exc}). Check the connection and retry (the download resumes), "
            f"or put the file at {weights_dir / resolved.filename} yourself."
        ) from exc
    return Path(path)
