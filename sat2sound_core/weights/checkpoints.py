"""Read Sat2Sound weights safely: official Lightning ``.ckpt`` files and our converted safetensors cache.

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
import hashlib
import json
import logging
import pickle
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sat2sound_core.common import files
from sat2sound_core.common.errors import WeightsError
from sat2sound_core.weights import unpickle
from sat2sound_core.weights.registry import CHECKPOINTS, CheckpointInfo

log = logging.getLogger(__name__)

FORMAT_TAG = "sat2sound-safetensors-v1"

# --------------------------------------------------------------------------------------------------
# Restricted unpickling (what is admitted, stand-ins and the bounded copy live in unpickle.py)


def _plain(obj: object) -> object:
    """Namespaces and dict-likes become plain dicts (memoised by id, bounded in depth and size)."""
    return unpickle.plain(obj)


def _refused(path: Path, names: list[str], reason: str = "") -> WeightsError:
    what = f" It references {', '.join(names[:8])}." if names else ""
    why = f" ({reason})" if reason else ""
    return WeightsError(
        f"Refused to load {path}: it is not a plain weights file — its pickle asks for code or "
        f"classes that a Sat2Sound checkpoint never needs{why}, so it was not unpickled.{what} Only "
        "use checkpoints from a source you trust (the official MVRL/sat2sound files load fine)."
    )


def _restricted_load(path: Path) -> tuple[object, unpickle.LoadContext]:
    """The raw object of a checkpoint (stand-ins, numpy records) and its load context; nothing runs."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(f"Checkpoint {path} is empty (0 bytes); delete it and download it again.")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError:
        is_zip = False
    with open(path, "rb") as f:
        head = f.read(512)
    if not is_zip and head[:2] == b"PK":
        raise WeightsError(
            f"Checkpoint {path} is truncated or corrupt (its zip directory is missing); "
            "delete it and download it again."
        )
    if not is_zip:
        what = unpickle.describe_non_checkpoint(head, size)
        if what is None and head[:1] != b"\x80":  # neither a torch zip nor a (legacy) pickle
            what = (f"is truncated or corrupt, or not a PyTorch checkpoint at all (it starts with {head[:8]!r}); "
                    "delete it and download it again")
        if what is not None:
            raise WeightsError(f"{path} {what}.")
    stand_ins: list[str] = []
    if is_zip:
        try:
            unknown = unpickle.unknown_globals(path)
        except Exception as exc:
            log.debug("global scan of %s failed: %s", path, exc)
            unknown = []
        refused = [g for g in unknown if not unpickle.may_stand_in(g)]
        if refused:
            raise _refused(path, refused)
        if len(unknown) > unpickle.MAX_STAND_INS:
            raise _refused(path, unknown, f"{len(unknown)} foreign classes, more than {unpickle.MAX_STAND_INS}")
        stand_ins = unknown
    try:
        with unpickle.restricted_globals(stand_ins) as ctx:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        names = [g for g in _unsafe_globals(path) if not unpickle.may_stand_in(g)] if is_zip else []
        reason = "" if names else _unpickler_reason(exc)
        raise _refused(path, names, reason) from exc
    except WeightsError:
        raise
    except Exception as exc:  # torch raises many types for damaged bytes (RuntimeError, EOFError, IndexError …)
        raise WeightsError(
            f"Checkpoint {path} is truncated or corrupt ({exc.__class__.__name__}: {str(exc)[:300]}); "
            "delete it and download it again."
        ) from exc
    return obj, ctx


def _unpickler_reason(exc: Exception) -> str:
    """The restricted unpickler's own reason, without torch's advice to turn the protection off."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker not in text:
        return ""
    line = text.split(marker, 1)[1].strip().split("\n")[0]
    return line[:300] if "weights_only" not in line and "add_safe_globals" not in line else ""


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return unpickle.unknown_globals(path)
    except Exception:
        return []


def safe_torch_load(path: Path) -> object:
    """``torch.load`` that only builds tensors, containers and the admitted hyper-parameter types.

    Classes a foreign fine-tune names outside what Sat2Sound reads become inert
    :class:`~sat2sound_core.weights.unpickle.Placeholder` objects. Raises :class:`WeightsError` for
    a truncated/corrupt file, a file that is not a checkpoint (named: a git-lfs pointer, an HTML
    page …) or a pickle that asks for code (naming what it asked for); nothing in the file is
    executed. The copy is memoised by id and bounded (see ``unpickle.MAX_DEPTH``/``MAX_NODES``).
    """
    obj, ctx = _restricted_load(path)
    try:
        return unpickle.plain(obj, ctx)
    except WeightsError as exc:
        raise WeightsError(f"Refused to load {path}: {exc}.") from None


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
    # only the state_dict and the hyper-parameters are read: nothing else in the file is walked
    obj, ctx = _restricted_load(path)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict; it is not a Sat2Sound checkpoint.")
    state = obj.get("state_dict")
    if isinstance(state, argparse.Namespace) or id(state) in ctx.records:
        state = None
    if state is None and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj  # a bare state_dict saved with torch.save
    if not isinstance(state, Mapping):
        hint = ""
        if "model" in obj:
            hint = " It looks like a backbone checkpoint ({'model': ...}: SatMAE or MGA-CLAP), not Sat2Sound."
        raise WeightsError(f"{path} has no 'state_dict'.{hint} Give one of the sat2sound/*.ckpt files.")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    for wrapper in ("model.", "module."):  # re-saved from a wrapper module or DataParallel
        if not _looks_like_sat2sound(list(tensors)) and tensors and all(k.startswith(wrapper) for k in tensors):
            tensors = {k[len(wrapper):]: v for k, v in tensors.items()}
    if not _looks_like_sat2sound(list(tensors)):
        missing = [m for m in _MARKERS if not any(k == m or k.startswith(m) for k in tensors)]
        raise WeightsError(
            f"{path} is not a Sat2Sound checkpoint: it has no {', '.join(missing)} weights "
            f"(first keys: {', '.join(list(tensors)[:3]) or 'none'}). Give one of the sat2sound/*.ckpt files."
        )
    try:
        raw_hp = obj.get("hyper_parameters")
        hp = {} if raw_hp is None else unpickle.plain(raw_hp, ctx)
    except WeightsError as exc:
        raise WeightsError(f"Refused to load {path}: its hyper_parameters are not plain values ({exc}).") from None
    if not isinstance(hp, Mapping):
        log.warning("%s: hyper_parameters are a %s, not a mapping; ignoring them", Path(path).name, type(hp).__name__)
        hp = {}
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
    hp_sat = hp.get("sat_type")
    sat_type = (hp_sat if isinstance(hp_sat, str) and hp_sat else None) or (info.sat_type if info else None)
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
        value = hp.get(key)
        if isinstance(value, int) and key in fields and value != fields[key]:
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
    with files.atomic_path(target) as tmp:
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
    try:
        config = json.loads(meta["config"])
    except (ValueError, RecursionError) as exc:  # not JSON, or nested past the parser's depth
        raise WeightsError(f"{path} has a config that is not JSON ({exc}); delete it (it is re-created from the .ckpt).") from None
    if not isinstance(config, dict):
        raise WeightsError(
            f"{path} has a config that is a {type(config).__name__}, not a JSON object; "
            "delete it (it is re-created from the .ckpt)."
        )
    return ConvertedCheckpoint(
        path=Path(path),
        state_dict=state,
        config=config,
        source_sha256=meta.get("source_sha256", ""),
        source=meta.get("source", ""),
    )


_cleaned: set[str] = set()


def clean_converted_cache(cache_dir: Path) -> list[Path]:
    """Remove temp files interrupted conversions left in ``cache_dir`` (once per folder per process).

    Only files of the atomic writer's own naming, older than this process and held by no live
    writer, are removed (see :func:`sat2sound_core.common.files.remove_stale_temps`).
    """
    key = str(Path(cache_dir).resolve())
    if key in _cleaned:
        return []
    _cleaned.add(key)
    removed = files.remove_stale_temps(cache_dir)
    if removed:
        log.info("removed %d temp file(s) that interrupted conversions left in %s", len(removed), cache_dir)
    return removed


def converted_cache_path(source_file: Path, cache_dir: Path) -> Path:
    """Where the converted copy of ``source_file`` lives (named by a content fingerprint)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source_file).name.split(".")[0])
    return cache_dir / f"{stem}-{quick_fingerprint(source_file)}.safetensors"
