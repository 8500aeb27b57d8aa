"""The FLAN-T5 text path: tokenizer + frozen ``T5EncoderModel`` -> (hidden states, mask).

Sat2Sound embeds captions from the last hidden state of ``google/flan-t5-large``'s encoder
(MODEL.md §6): tokenised with padding to the longest caption, truncation at 512 tokens and ``</s>``
appended. The encoder is built once per process and shared with TangoFlux through
:func:`sat2sound_core.weights.hub.shared_encoder`.

Where the encoder weights come from, in order: a folder of ours (``SAT2SOUND_T5_DIR``, default
``<weights>/flan-t5-large``) holding ``encoder.safetensors`` (or a full ``model.safetensors``);
the copy inside a local TangoFlux ``tangoflux.safetensors``; else only the encoder tensors of the
Hub's ``model.safetensors``, fetched by HTTP range requests into that folder.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sat2sound_core.common.errors import DownloadError, InputError, WeightsError
from sat2sound_core.common.progress import ProgressCallback

log = logging.getLogger(__name__)

FLAN_T5_REPO = "google/flan-t5-large"
MAX_LENGTH = 512
T5_DIR_ENV = "SAT2SOUND_T5_DIR"
ENCODER_FILE = "encoder.safetensors"
ENCODER_FORMAT = "sat2sound-t5-encoder-v1"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")  # required
TOKENIZER_OPTIONAL = ("special_tokens_map.json", "spiece.model")
ENCODER_APPROX_BYTES = 1_365_000_000  # 341.2 M fp32 parameters
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
    kind: str  # "ours", "full", "tangoflux"


class TextEncoder:
    """Tokenizer plus frozen T5 encoder; :meth:`encode` gives what Sat2Sound's text path consumes."""

    def __init__(self, tokenizer: Any, model: Any, max_length: int = MAX_LENGTH) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, L, d_model) float32 and the token mask (B, L) bool (True = real token).

        Captions are padded to the longest one, truncated at 512 tokens, and end in ``</s>``.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError("texts must be a non-empty list of strings")
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        ids = batch["input_ids"].to(self.device)
        attention = batch["attention_mask"].to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=attention).last_hidden_state
        return hidden.float(), attention == 1


class LazyTextEncoder:
    """Builds the real :class:`TextEncoder` on first use, so loading Sat2Sound stays fast and offline.

    ``loader(device)`` defaults to :func:`load_text_encoder`.
    """

    def __init__(self, device: str | torch.device = "cpu", loader: Callable[[torch.device], TextEncoder] | None = None):
        self.device = torch.device(device)
        self._loader = loader or (lambda dev: load_text_encoder(dev))
        self._encoder: TextEncoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def get(self) -> TextEncoder:
        """The underlying encoder, built (and weights fetched if needed) on the first call."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._loader(self.device)
            return self._encoder

    @property
    def tokenizer(self) -> Any:
        return self.get().tokenizer

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get().encode(texts)


# --------------------------------------------------------------------------------------------------
# Locating files


def t5_dir() -> Path:
    """Our FLAN-T5 folder: ``SAT2SOUND_T5_DIR`` or ``<weights>/flan-t5-large``."""
    from sat2sound_core.common.settings import get_settings

    env = os.environ.get(T5_DIR_ENV)
    return Path(env).expanduser() if env else get_settings().weights / "flan-t5-large"


def _hub_file(name: str, offline: bool, weights: Path) -> Path:
    """A small file of google/flan-t5-large from the caches or, when allowed, the Hub."""
    from huggingface_hub import hf_hub_download

    endpoint = os.environ.get("HF_ENDPOINT") or None
    for cache in (weights / "hf", None):
        try:
            return Path(hf_hub_download(FLAN_T5_REPO, name, cache_dir=cache, local_files_only=True))
        except Exception:  # not cached there
            continue
    if offline:
        raise DownloadError(
            f"{FLAN_T5_REPO}/{name} is needed for the text encoder but offline mode is on. Download it from "
            f"https://huggingface.co/{FLAN_T5_REPO} into {t5_dir()} or allow downloads "
            "(unset HF_HUB_OFFLINE and SAT2SOUND_OFFLINE)."
        )
    try:
        return Path(hf_hub_download(FLAN_T5_REPO, name, cache_dir=weights / "hf", endpoint=endpoint))
    except Exception as exc:
        raise DownloadError(f"Could not download {FLAN_T5_REPO}/{name}: {exc}") from exc


def load_tokenizer(folder: Path | None = None) -> Any:
    """The FLAN-T5 tokenizer (transformers ``AutoTokenizer``) from ``folder``, our T5 folder or the Hub."""
    from transformers import AutoTokenizer

    from sat2sound_core.common.settings import get_settings

    folder = folder or t5_dir()
    if not ((folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file()):
        settings = get_settings()
        files = [_hub_file(n, settings.is_offline, settings.weights) for n in TOKENIZER_FILES]
        for optional in TOKENIZER_OPTIONAL:
            try:
                files.append(_hub_file(optional, settings.is_offline, settings.weights))
            except DownloadError:
                log.debug("optional tokenizer file %s unavailable", optional)
        folder = files[0].parent
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if getattr(tokenizer, "model_max_length", MAX_LENGTH) > MAX_LENGTH:
        tokenizer.model_max_length = MAX_LENGTH
    return tokenizer


def _tangoflux_file() -> tuple[Path, Path | None] | None:
    """(tangoflux.safetensors, its t5_config.json if any) when TangoFlux weights are on this machine."""
    from sat2sound_core.common.settings import get_settings

    settings = get_settings()
    source = Path(settings.tangoflux).expanduser()
    if source.is_dir() and (source / "tangoflux.safetensors").is_file():
        cfg = source / "t5_config.json"
        return source / "tangoflux.safetensors", cfg if cfg.is_file() else None
    if source.exists():
        return None
    from huggingface_hub import hf_hub_download

    repo = settings.tangoflux.removeprefix("hf-hub:").split("@")[0]
    for cache in (settings.weights / "hf", None):
        try:
            return Path(hf_hub_download(repo, "tangoflux.safetensors", cache_dir=cache, local_files_only=True)), None
        except Exception:
            continue
    return None


def locate_encoder_weights(download: bool = True, progress: ProgressCallback | None = None) -> tuple[EncoderWeights, Path | None]:
    """Find (or range-download) the encoder tensors; returns them and a T5 config file if one was found."""
    from sat2sound_core.common.settings import get_settings

    folder = t5_dir()
    cfg = folder / "config.json"
    config_file = cfg if cfg.is_file() else None
    if (folder / ENCODER_FILE).is_file():
        return EncoderWeights(folder / ENCODER_FILE, "", "ours"), config_file
    if (folder / "model.safetensors").is_file():
        return EncoderWeights(folder / "model.safetensors", "", "full"), config_file
    tango = _tangoflux_file()
    if tango is not None:
        path, tcfg = tango
        log.info("using the T5 encoder inside %s", path)
        return EncoderWeights(path, "text_encoder.", "tangoflux"), config_file or tcfg
    if not download:
        raise WeightsError(f"no FLAN-T5 encoder weights in {folder} and no local TangoFlux weights")
    settings = get_settings()
    if settings.is_offline:
        raise DownloadError(
            f"The FLAN-T5-large text encoder ({ENCODER_APPROX_BYTES / 1e9:.2f} GB) is needed but offline mode "
            f"is on. Put encoder.safetensors (written by this product) or {FLAN_T5_REPO}'s model.safetensors "
            f"and config.json in {folder}, or allow downloads (unset HF_HUB_OFFLINE and SAT2SOUND_OFFLINE)."
        )
    return EncoderWeights(download_encoder(folder, progress=progress), "", "ours"), config_file


def download_encoder(folder: Path, progress: ProgressCallback | None = None, endpoint: str | None = None) -> Path:
    """Fetch only the encoder tensors of google/flan-t5-large's model.safetensors into ``folder``.

    Uses range requests (resumable) with the Hugging Face token when one is configured; also
    stores the model's ``config.json`` beside it.
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.weights.hub import download_safetensors_subset

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    folder.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    config_src = _hub_file("config.json", settings.is_offline, settings.weights)
    config = json.loads(config_src.read_text())
    if not (folder / "config.json").is_file():
        _atomic_write_text(folder / "config.json", json.dumps(config, indent=1))
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Building the encoder


def _read_config(weights: EncoderWeights, config_file: Path | None) -> dict[str, Any]:
    from safetensors import safe_open

    if config_file is not None:
        return json.loads(config_file.read_text())
    with safe_open(str(weights.path), framework="pt") as f:
        meta = f.metadata() or {}
        keys = set(f.keys())
        shared = weights.prefix + "shared.weight"
        shape = tuple(f.get_slice(shared).get_shape()) if shared in keys else None
        n_layers = len({k.split(".")[len(weights.prefix.split(".")) + 1] for k in keys
                        if k.startswith(weights.prefix + "encoder.block.")})
    if "config" in meta:
        return json.loads(meta["config"])
    if shape == (32128, 1024) and n_layers == 24:  # flan-t5-large's encoder: its config is known
        return dict(FLAN_T5_LARGE_CONFIG)
    from sat2sound_core.common.settings import get_settings

    settings = get_settings()
    return json.loads(_hub_file("config.json", settings.is_offline, settings.weights).read_text())


def is_flan_t5_large(config: Mapping[str, Any]) -> bool:
    """True when a T5 config has flan-t5-large's encoder shape (so the shared-encoder key applies)."""
    return all(config.get(k) == v for k, v in _FLAN_SHAPE.items())


def build_t5_encoder(config: Mapping[str, Any], weights: EncoderWeights) -> Any:
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
    return model.eval().requires_grad_(False)


def load_text_encoder(
    device: str | torch.device = "cpu", progress: ProgressCallback | None = None, download: bool = True
) -> TextEncoder:
    """The shared FLAN-T5 text encoder on ``device`` (float32), with its tokenizer.

    Built once per process: the encoder object is registered under
    ``"flan-t5-large|<device>|torch.float32"`` in :mod:`sat2sound_core.weights.hub`, the key TangoFlux uses too.
    """
    from sat2sound_core.weights.hub import shared_encoder

    dev = torch.device(device)
    dtype = torch.float32
    weights, config_file = locate_encoder_weights(download=download, progress=progress)
    config = _read_config(weights, config_file)
    if is_flan_t5_large(config):
        key = f"flan-t5-large|{dev}|{dtype}"
    else:
        key = f"t5|{weights.path.resolve()}|{dev}|{dtype}"

    def build() -> Any:
        return build_t5_encoder(config, weights).to(dev)

    model = shared_encoder(key, build)
    tok_folder = t5_dir()
    return TextEncoder(load_tokenizer(tok_folder), model)
