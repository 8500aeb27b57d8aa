"""``load_model``: from a checkpoint name, Hub reference or file to a ready :class:`Sat2Sound`.

Resolve the source, fetch the file, read it safely (our safetensors copy when one exists), build
the model from the configuration the weights imply, check that every key is accounted for, load
strictly, move it to the device, choose the precision and attach a lazily built FLAN-T5 text
encoder. Loaded models are cached per (file, device, precision) for the life of the process.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sat2sound_core.common.devices import TOWERS_MIN_BF16_SPEEDUP, resolve_device, resolve_precision
from sat2sound_core.common.errors import ConfigError, WeightsError
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.sat2sound import Sat2Sound
from sat2sound_core.weights import checkpoints as ck
from sat2sound_core.weights.hub import fetch
from sat2sound_core.weights.registry import DEFAULT_CHECKPOINT, CheckpointInfo, resolve_source

log = logging.getLogger(__name__)

_lock = threading.Lock()
_models: dict[tuple[str, str, str], Sat2Sound] = {}

def config_from_dict(values: Mapping[str, Any], label: str = "a converted checkpoint") -> ModelConfig:
    """A :class:`ModelConfig` from stored (JSON) values; lists become tuples, unknown keys are ignored.

    Raises :class:`WeightsError` (naming ``label``) for values that are not a mapping or describe no
    buildable model (wrong types, negative or absurd sizes), before anything is allocated.
    """
    if not isinstance(values, Mapping):
        raise WeightsError(
            f"{label} has a config that is a {type(values).__name__}, not a JSON object; delete it "
            "(a converted copy is re-created from the .ckpt)."
        )
    known = {f.name: f for f in dataclasses.fields(ModelConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            log.warning("ignoring unknown config field %r in %s", str(key)[:60], label)
            continue
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    try:
        return ModelConfig(**kwargs)
    except ConfigError as exc:
        raise WeightsError(
            f"{label} has an invalid config ({exc}); delete it (a converted copy is re-created from the .ckpt)."
        ) from None


def official_config(fields: Mapping[str, Any]) -> ModelConfig:
    """The config of an official checkpoint: official sizes plus what its file says (name, sat_type,
    metadata_type, widths). Layer counts and heads are not recorded in the files; they are fixed."""
    return ModelConfig(**fields)


def _unused_patterns(model: Sat2Sound) -> list[re.Pattern[str]]:
    getter = getattr(model, "unused_key_patterns", None)
    patterns = getter() if callable(getter) else model.UNUSED_KEYS_PATTERNS
    return [re.compile(p) for p in patterns]


def _fill_dead_keys(model: Sat2Sound, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys the model has but nothing reads (e.g. BatchNorm's num_batches_tracked) keep the model's value."""
    patterns = _unused_patterns(model)
    out = dict(state_dict)
    for key, value in model.state_dict().items():
        if key not in out and any(p.search(key) for p in patterns):
            out[key] = value
    return out


def _check_keys(model: Sat2Sound, state_dict: Mapping[str, torch.Tensor], label: str) -> None:
    from sat2sound_core.weights.statedict import key_mismatch

    problem = key_mismatch({k: v.shape for k, v in model.state_dict().items()},
                           {k: v.shape for k, v in state_dict.items()})
    if problem:
        raise WeightsError(
            f"{label} does not fit the Sat2Sound architecture ({model.config.sat_type}, "
            f"metadata_type={model.config.metadata_type}): {problem}. "
            "It is probably another model or a damaged file; use an official sat2sound/*.ckpt."
        )


def _check_values(model: Sat2Sound, state_dict: Mapping[str, torch.Tensor], label: str, exact: bool) -> None:
    """Refuse weights that would load but be wrong: reinterpreted dtypes, NaN or infinite values."""
    from sat2sound_core.weights.statedict import dtype_mismatch, non_finite_keys

    problem = dtype_mismatch({k: v.dtype for k, v in model.state_dict().items()},
                             {k: v.dtype for k, v in state_dict.items()}, exact=exact)
    if problem:
        raise WeightsError(
            f"{label} stores weights in the wrong number format ({problem}); loading it would give silently "
            "wrong embeddings. The file is damaged or was written by another tool: delete it (a converted copy "
            "is re-created from the .ckpt) or use an official sat2sound/*.ckpt."
        )
    bad = non_finite_keys(state_dict)
    if bad:
        few = ", ".join(bad[:8]) + (f" … (+{len(bad) - 8} more)" if len(bad) > 8 else "")
        raise WeightsError(
            f"{label} has NaN or infinite weights in {len(bad)} tensor(s): {few}. Every map and embedding "
            "would be NaN; the file is damaged or from a diverged training run — use an official sat2sound/*.ckpt."
        )


def _build(config: ModelConfig, state_dict: Mapping[str, torch.Tensor], label: str, convert: bool) -> Sat2Sound:
    model = Sat2Sound(config, init="empty")  # every tensor is overwritten by the strict load below
    sd = model.convert_official_state_dict(state_dict) if convert else dict(state_dict)
    _check_values(model, sd, label, exact=not convert)  # what the file holds (dead keys are filled next)
    sd = _fill_dead_keys(model, sd)
    _check_keys(model, sd, label)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _load_cpu_fp32(file: Path, info: CheckpointInfo | None, use_cache: bool) -> Sat2Sound:
    """Build the fp32 CPU model from ``file`` (official .ckpt or our safetensors), caching a copy."""
    from sat2sound_core.common.settings import get_settings

    if ck.is_safetensors(file):
        conv = ck.read_converted(file)
        return _build(config_from_dict(conv.config, str(file)), conv.state_dict, str(file), convert=False)
    cached: Path | None = None
    if use_cache:
        cache_dir = get_settings().cache_dir("converted")
        ck.clean_converted_cache(cache_dir)
        cached = ck.converted_cache_path(file, cache_dir)
        if cached.is_file():
            try:
                conv = ck.read_converted(cached)
                log.info("loading converted copy %s", cached)
                return _build(config_from_dict(conv.config, str(cached)), conv.state_dict, str(cached), convert=False)
            except WeightsError as exc:
                log.warning("ignoring unusable converted copy %s: %s", cached, exc)
    official = ck.read_official_checkpoint(file)
    config = official_config(ck.infer_config_fields(official, info))
    model = _build(config, official.state_dict, str(file), convert=True)
    if cached is not None:
        try:
            ck.save_converted(
                cached, model.state_dict(), dataclasses.asdict(config), ck.sha256_file(file), str(file)
            )
            log.info("cached a converted copy at %s", cached)
        except OSError as exc:  # a read-only cache must not stop the load
            log.warning("could not cache a converted copy at %s: %s", cached, exc)
    return model


def load_model(
    source: str | Path = DEFAULT_CHECKPOINT,
    device: str | torch.device | None = None,
    precision: str | None = None,
    *,
    progress: ProgressCallback | None = None,
    text_encoder: bool = True,
    use_cache: bool = True,
) -> Sat2Sound:
    """Load a Sat2Sound model ready for inference.

    ``source`` is a registry name (``bingmap_withmeta``, see ``list_checkpoints()``), a Hub file
    (``hf-hub:MVRL/sat2sound/sat2sound/bingmap_withmeta.ckpt``) or the path of an official Lightning
    ``.ckpt`` or of a safetensors file written by this product. Official checkpoints are unpickled
    without running code and converted once into a memory-mapped safetensors cache. ``precision``
    is ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 where bf16 GEMMs measure ≥ 1.5× fp32 on this machine);
    ``device``/``precision`` left None follow ``SAT2SOUND_DEVICE``/``SAT2SOUND_PRECISION`` when set, else cpu/fp32.
    The same (file, device, precision) returns the same model object. Unless ``text_encoder`` is
    False a FLAN-T5 encoder is attached, built on the first ``encode_text`` call. ``progress``
    (``(done, total, message)``) hears about the download and the loading steps.
    """
    from sat2sound_core.common.settings import device_or_default, get_settings, precision_or_default

    settings = get_settings()
    dev = resolve_device(device_or_default(device, "cpu"))
    prec = resolve_precision(precision_or_default(precision, "fp32"), dev, min_bf16_speedup=TOWERS_MIN_BF16_SPEEDUP)
    resolved = resolve_source(source, settings.hf_repo)
    file = fetch(resolved, settings.weights, settings.is_offline, progress=progress).resolve()
    key = (str(file), str(dev), prec)
    with _lock:
        if key in _models:
            return _models[key]
        report(progress, 0, 2, f"reading {file.name}")
        model = _load_cpu_fp32(file, resolved.info, use_cache)
        report(progress, 1, 2, f"preparing the model on {dev} ({prec})")
        model.to(dev)
        model.set_precision(prec)
        if text_encoder:
            from sat2sound_core.model.text import LazyTextEncoder
            from sat2sound_core.weights.t5 import load_text_encoder

            encoder = LazyTextEncoder(device=dev, loader=load_text_encoder)
            setattr(model, "text_encoder", encoder)  # noqa: B010 (property with a custom setter)
        log.info("loaded %s (%s, %s) on %s in %s", model.config.name, model.config.sat_type,
                 model.config.metadata_type, dev, prec)
        _models[key] = model
        report(progress, 2, 2, "model ready")
        return model


def clear_model_cache() -> None:
    """Forget every cached model (tests, freeing memory)."""
    with _lock:
        _models.clear()
