"""The FLAN-T5-large text encoder's weights: where they are, fetching them, building the encoder.

Where the encoder tensors come from, in order: the FLAN-T5 folder (``SAT2SOUND_T5_DIR``, default
``<weights>/flan-t5-large``) holding ``encoder.safetensors`` (written by this product) or a full
``model.safetensors``; the copy inside a local TangoFlux ``tangoflux.safetensors``; else only the
encoder tensors of the Hub's ``model.safetensors``, fetched by HTTP range requests into that folder
(:func:`download_encoder`).

The encoder is built once per process (:func:`sat2sound_core.common.shared.shared`) under the key
``flan-t5-large|<device>|torch.float32`` that TangoFlux uses too, so the two share one copy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from sat2sound_core.common import files
from sat2sound_core.common.errors import DownloadError, WeightsError
from sat2sound_core.common.progress import ProgressCallback
from sat2sound_core.common.settings import get_settings
from sat2sound_core.common.shared import shared
from sat2sound_core.weights.registry import FLAN_T5_ENCODER_BYTES, FLAN_T5_REPO

if TYPE_CHECKING:
    from transformers import T5EncoderModel

    from sat2sound_core.model.text import TextEncoder

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.safetensors"
ENCODER_FORMAT = "sat2sound-t5-encoder-v1"
ENCODER_APPROX_BYTES = FLAN_T5_ENCODER_BYTES
_TIED = "encoder.embed_tokens.weight"
_FLAN_SHAPE = {"d_model": 1024, "num_layers": 24, "vocab_size": 32128}
# google/flan-t5-large's config.json (the values the encoder needs), so a local TangoFlux copy of the
# encoder works offline without fetching the config
FLAN_T5_LARGE_CONFIG: dict[str, Any] = {
    "vocab_size": 32128, "d_model": 1024, "d_kv": 64, "d_ff": 2816, "num_layers": 24,
    "num_decoder_layers": 24, "num_heads": 16, "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
    "is_encoder_decoder": True, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    "tie_word_embeddings": False, "n_positions": 512,
}


@dataclass(frozen=True)
class EncoderWeights:
    """Where the T5 encoder tensors are: a safetensors file and the key prefix they carry there."""

    path: Path
    prefix: str
    kind: Literal["ours", "full", "tangoflux"]


# --------------------------------------------------------------------------------------------------
# Locating files


def t5_dir() -> Path:
    """The FLAN-T5 folder: ``SAT2SOUND_T5_DIR`` or ``<weights>/flan-t5-large``."""
    return get_settings().t5_folder


def local_tangoflux() -> tuple[Path, Path | None] | None:
    """(``tangoflux.safetensors``, its ``t5_config.json`` if any) when the TangoFlux weights named by
    ``SAT2SOUND_TANGOFLUX`` are on this machine (a local folder, or a Hugging Face cache), else None."""
    settings = get_settings()
    source = Path(settings.tangoflux).expanduser()
    if source.is_dir() and (source / "tangoflux.safetensors").is_file():
        cfg = source / "t5_config.json"
        return source / "tangoflux.safetensors", cfg if cfg.is_file() else None
    if source.exists():
        return None
    from sat2sound_core.weights.hub import cached_file

    repo = settings.tangoflux.removeprefix("hf-hub:").split("@")[0]
    cached = cached_file(repo, "tangoflux.safetensors", settings.weights)
    return (cached, None) if cached is not None else None


def find_encoder_weights() -> tuple[EncoderWeights, Path | None] | None:
    """The encoder tensors on this machine and a T5 config file if one was found, or None (never downloads)."""
    folder = t5_dir()
    cfg = folder / "config.json"
    config_file = cfg if cfg.is_file() else None
    if (folder / ENCODER_FILE).is_file():
        return EncoderWeights(folder / ENCODER_FILE, "", "ours"), config_file
    if (folder / "model.safetensors").is_file():
        return EncoderWeights(folder / "model.safetensors", "", "full"), config_file
    tango = local_tangoflux()
    if tango is not None:
        path, tcfg = tango
        return EncoderWeights(path, "text_encoder.", "tangoflux"), config_file or tcfg
    return None


def locate_encoder_weights(download: bool = True, progress: ProgressCallback | None = None) -> tuple[EncoderWeights, Path | None]:
    """Find (or range-download) the encoder tensors; returns them and a T5 config file if one was found."""
    found = find_encoder_weights()
    if found is not None:
        if found[0].kind == "tangoflux":
            log.info("using the T5 encoder inside %s", found[0].path)
        return found
    folder = t5_dir()
    cfg = folder / "config.json"
    config_file = cfg if cfg.is_file() else None
    if not download:
        raise WeightsError(f"no FLAN-T5 encoder weights in {folder} and no local TangoFlux weights")
    if get_settings().is_offline:
        raise DownloadError(
            f"The FLAN-T5-large text encoder ({ENCODER_APPROX_BYTES / 1e9:.2f} GB) is needed but offline mode "
            f"is on. Put encoder.safetensors (written by this product) or {FLAN_T5_REPO}'s model.safetensors "
            f"and config.json in {folder}, or allow downloads (unset HF_HUB_OFFLINE and SAT2SOUND_OFFLINE)."
        )
    return EncoderWeights(download_encoder(folder, progress=progress), "", "ours"), config_file


def _hub_config() -> Path:
    from sat2sound_core.weights.hub import fetch_file

    return fetch_file(FLAN_T5_REPO, "config.json", needed_for="the text encoder", folder=t5_dir())


def download_encoder(folder: Path, progress: ProgressCallback | None = None, endpoint: str | None = None) -> Path:
    """Fetch only the encoder tensors of google/flan-t5-large's model.safetensors into ``folder``.

    Uses range requests (resumable) with the Hugging Face token when one is configured; also
    stores the model's ``config.json`` beside it.
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from sat2sound_core.weights.hub import download_safetensors_subset

    endpoint = endpoint or get_settings().hf_endpoint
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads(_hub_config().read_text())
    if not (folder / "config.json").is_file():
        files.write_text(folder / "config.json", json.dumps(config, indent=1))
    url = hf_hub_url(FLAN_T5_REPO, "model.safetensors", endpoint=endpoint)
    log.info("downloading the FLAN-T5 encoder tensors (≈%.2f GB) from %s", ENCODER_APPROX_BYTES / 1e9, url)
    return download_safetensors_subset(
        url,
        folder / ENCODER_FILE,
        keep=lambda k: k.startswith("encoder.") or k == "shared.weight",
        headers=build_hf_headers(),
        metadata={"format": ENCODER_FORMAT, "source": url, "config": json.dumps(config)},
        progress=progress,
    )


# --------------------------------------------------------------------------------------------------
# Building the encoder


def _read_config(weights: EncoderWeights, config_file: Path | None) -> dict[str, Any]:
    """The T5 config for ``weights``: the config file, the file's own metadata, flan-t5-large's known
    config when the shapes are flan-t5-large's, else the Hub's config.json."""
    from safetensors import safe_open

    if config_file is not None:
        return dict(json.loads(config_file.read_text()))
    with safe_open(str(weights.path), framework="pt") as f:
        meta = f.metadata() or {}
        keys = set(f.keys())
        embedding = weights.prefix + "shared.weight"
        shape = tuple(f.get_slice(embedding).get_shape()) if embedding in keys else None
        n_layers = len({k.split(".")[len(weights.prefix.split(".")) + 1] for k in keys
                        if k.startswith(weights.prefix + "encoder.block.")})
    if "config" in meta:
        return dict(json.loads(meta["config"]))
    if shape == (32128, 1024) and n_layers == 24:  # flan-t5-large's encoder: its config is known
        return dict(FLAN_T5_LARGE_CONFIG)
    return dict(json.loads(_hub_config().read_text()))


def is_flan_t5_large(config: Mapping[str, object]) -> bool:
    """True when a T5 config has flan-t5-large's encoder shape (so the shared-encoder key applies)."""
    return all(config.get(k) == v for k, v in _FLAN_SHAPE.items())


def build_t5_encoder(config: Mapping[str, Any], weights: EncoderWeights) -> T5EncoderModel:
    """An eval-mode ``T5EncoderModel`` with the encoder tensors of ``weights`` (strictly checked).

    The only key allowed to be absent is the input embedding tied to ``shared.weight``.
    """
    from safetensors import safe_open
    from transformers import T5Config, T5EncoderModel

    from sat2sound_core.weights.statedict import key_mismatch

    cfg = T5Config(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
    with torch.device("meta"):
        model = T5EncoderModel(cfg)
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(weights.path), framework="pt") as f:
        for full in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
            if not full.startswith(weights.prefix):
                continue
            key = full[len(weights.prefix) :]
            if key in expected:
                state[key] = f.get_tensor(full)
            elif weights.kind == "ours" or weights.prefix:
                raise WeightsError(f"{weights.path}: unexpected T5 encoder tensor {full!r}")
    if "shared.weight" not in state and _TIED in state:
        state["shared.weight"] = state[_TIED]
    state.pop(_TIED, None)
    problem = key_mismatch({k: v.shape for k, v in expected.items()}, {k: v.shape for k, v in state.items()},
                           allowed_missing={_TIED})
    if problem:
        raise WeightsError(
            f"{weights.path} does not hold a T5 encoder matching its config: {problem}. "
            "Delete it to download it again."
        )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False, assign=True)
    model.encoder.embed_tokens = model.shared
    leftover = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if leftover:
        raise WeightsError(f"T5 tensors were not loaded: {leftover[:5]}")
    model.eval()
    model.requires_grad_(False)
    return model


def load_text_encoder(
    device: str | torch.device = "cpu", progress: ProgressCallback | None = None, download: bool = True
) -> TextEncoder:
    """The shared FLAN-T5 text encoder on ``device`` (float32), with its tokenizer.

    Built once per process: the encoder is kept under ``"flan-t5-large|<device>|torch.float32"``
    (:func:`sat2sound_core.common.shared.shared`), the key TangoFlux uses too.
    """
    from sat2sound_core.model.text import TextEncoder
    from sat2sound_core.preprocess.text import load_tokenizer

    dev = torch.device(device)
    dtype = torch.float32
    weights, config_file = locate_encoder_weights(download=download, progress=progress)
    config = _read_config(weights, config_file)
    if is_flan_t5_large(config):
        key = f"flan-t5-large|{dev}|{dtype}"
    else:
        key = f"t5|{weights.path.resolve()}|{dev}|{dtype}"

    def build() -> T5EncoderModel:
        model = build_t5_encoder(config, weights)
        cast(torch.nn.Module, model).to(dev)  # in place, as for every torch module (transformers types it oddly)
        return model

    model = shared(key, build)
    return TextEncoder(load_tokenizer(t5_dir()), model)
