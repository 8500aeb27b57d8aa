"""The Sat2Sound model: image, audio and text towers meeting in one sparse codebook.

:class:`Sat2Sound` computes what the official ``sat2soundModel.get_embeds`` computes in evaluation
and keeps the official state_dict names, so an official checkpoint loads after
:meth:`Sat2Sound.convert_official_state_dict` (which only drops known-dead tensors and slices the
value part of the last HTS-AT block's qkv). Every ``encode_*`` returns an :class:`Encoding`.
"""

from __future__ import annotations

import contextlib
import numbers
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from sat2sound_core.common.errors import ConfigError, InputError, WeightsError
from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.fdt import FDT, CodebookQuery
from sat2sound_core.model.fuser import SatEncoder
from sat2sound_core.model.htsat import AudioEncoder
from sat2sound_core.model.vit import SatMAEBackbone, ground_resolution
from sat2sound_core.preprocess.metadata import Metadata, MetadataBatch, encode_metadata

PRECISIONS = ("fp32", "bf16")
_PRECISION_ALIASES = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16"}
_HTSAT = "audio_encoder.model.audio_enc"


class TextEncoding(Protocol):
    """What :attr:`Sat2Sound.text_encoder` holds: FLAN-T5 hidden states and the token mask of texts."""

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` → (hidden (B, L, 1024) float32, mask (B, L) bool, True for real tokens)."""
        ...


@dataclass
class Encoding:
    """What one ``encode_*`` call returns.

    ``embedding`` (B, 1024): the un-normalised codebook embedding (L2-normalise before cosine
    similarities); ``codebook_weights`` (B, 16000): its sparsemax weights; ``token_scores``
    (B, N, 16000) or None: raw token·codebook dot products before any scaling or masking, for all N
    tokens (for images: the 196 patch tokens in row-major order, then the metadata tokens);
    ``token_valid`` (B, N) bool or None: which tokens are real (text padding and invalid metadata
    tokens are False).
    """

    embedding: torch.Tensor
    codebook_weights: torch.Tensor
    token_scores: torch.Tensor | None = None
    token_valid: torch.Tensor | None = None


class Sat2Sound(nn.Module):
    """Sat2Sound (Khanal et al.) as plain PyTorch modules, evaluation semantics only.

    Build it from a :class:`ModelConfig` and load weights with
    ``model.load_state_dict(model.convert_official_state_dict(sd), strict=True)`` (what
    ``sat2sound_core.load_model`` does). ``text_encoder`` is an object with
    ``encode(texts) -> (hidden (B,L,1024) float32, mask (B,L) bool)`` attached by the loader; it is
    not a submodule and not part of the state_dict.
    """

    #: official keys that nothing in evaluation reads; dropped silently by the converter
    UNUSED_KEYS_PATTERNS: tuple[str, ...] = (
        r"^logit_scale_[A-Za-z_]+$",
        rf"^{re.escape(_HTSAT)}\.audio_feats_extractor\.",
        rf"^{re.escape(_HTSAT)}\.tscam_conv\.",
        rf"^{re.escape(_HTSAT)}\.head\.",
        r"(^|\.)num_batches_tracked$",
        # last HTS-AT block (official sizes): only its value path is used
        rf"^{re.escape(_HTSAT)}\.layers\.3\.blocks\.1\.(mlp\.|attn_mask$|attn\.relative_position_)",
    )

    def __init__(self, config: ModelConfig | None = None, *, init: str = "random") -> None:
        """``init="random"`` initialises parameters randomly (tests, benchmarks); ``"empty"`` skips
        that (about a second for the full model) when weights are loaded right after; the constant
        Swin buffers are computed either way."""
        super().__init__()
        if init not in ("random", "empty"):
            raise ConfigError(f"init must be 'random' or 'empty', got {init!r}")
        self.config = config or ModelConfig()
        if init == "empty":
            with torch.device("meta"):
                self._build()
            self.to_empty(device="cpu")
            for module in self.modules():
                reset = getattr(type(module), "reset_constants", None)
                if reset is not None:
                    reset(module)
        else:
            self._build()
        self._text_encoder: TextEncoding | None = None
        self._precision = "fp32"
        self.register_load_state_dict_post_hook(self._refresh_score_codebook)
        self.eval()
        self.requires_grad_(False)

    def _build(self) -> None:
        self.satmae_backbone = SatMAEBackbone(self.config)
        self.sat_encoder = SatEncoder(self.config) if self.config.has_metadata else None
        self.audio_encoder = AudioEncoder(self.config)
        self.fdt = FDT(self.config)

    # ------------------------------------------------------------------ text encoder attachment
    @property
    def text_encoder(self) -> TextEncoding | None:
        """The attached text encoder (``encode(texts) -> (hidden, mask)``) or None."""
        return self._text_encoder

    def __setattr__(self, name: str, value: object) -> None:
        # keep the text encoder out of _modules so it never enters state_dict/precision casts
        if name == "text_encoder":
            object.__setattr__(self, "_text_encoder", value)
            return
        super().__setattr__(name, value)  # type: ignore[arg-type]  # nn.Module's annotation is narrower than what it takes

    # ------------------------------------------------------------------ state_dict conversion
    def unused_key_patterns(self) -> tuple[str, ...]:
        """:attr:`UNUSED_KEYS_PATTERNS` with the last HTS-AT block indexed for this config."""
        last_stage = len(self.config.htsat_depths) - 1
        last_block = self.config.htsat_depths[-1] - 1
        last = (rf"^{re.escape(_HTSAT)}\.layers\.{last_stage}\.blocks\.{last_block}\."
                r"(mlp\.|attn_mask$|attn\.relative_position_)")
        return (*self.UNUSED_KEYS_PATTERNS[:-1], last)

    def _last_block_prefix(self) -> str:
        last_stage = len(self.config.htsat_depths) - 1
        last_block = self.config.htsat_depths[-1] - 1
        return f"{_HTSAT}.layers.{last_stage}.blocks.{last_block}.attn."

    def convert_official_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map an official state_dict (exact official keys) onto this module's keys.

        Drops keys matching :meth:`unused_key_patterns`, and replaces the last HTS-AT block's
        ``attn.qkv`` (3C×C) by its value rows ``attn.v_proj`` (C×C). Nothing is invented: every other
        key passes through unchanged, so a strict ``load_state_dict`` still reports anything missing
        or unexpected. Already-converted state_dicts pass through unchanged.
        """
        patterns = [re.compile(p) for p in self.unused_key_patterns()]
        prefix = self._last_block_prefix()
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if any(p.search(key) for p in patterns):
                continue
            if key.startswith(prefix + "qkv."):
                leaf = key[len(prefix + "qkv."):]
                rows = value.shape[0]
                if rows % 3:
                    raise WeightsError(f"{key} has {rows} rows, not a multiple of 3: not an HTS-AT qkv")
                out[f"{prefix}v_proj.{leaf}"] = value[2 * rows // 3:].clone()
                continue
            out[key] = value
        return out

    def official_keys(self) -> list[str]:
        """The official state_dict keys this model consumes (its own keys with the last block's
        ``v_proj`` named as the official ``qkv``); the dead keys of :meth:`unused_key_patterns` are
        accepted on top of these."""
        prefix = self._last_block_prefix()
        return [k.replace(prefix + "v_proj.", prefix + "qkv.") for k in self.state_dict()]

    # ------------------------------------------------------------------ precision
    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"bf16"``."""
        return self._precision

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.fdt.space_dict.device

    def set_precision(self, precision: str) -> Sat2Sound:
        """Choose the matrix-math precision: ``"fp32"`` or ``"bf16"``.

        bf16 casts the towers' Linear/Conv/Embedding weights to bfloat16 once and runs them under bf16
        autocast; LayerNorm/BatchNorm parameters, the residual streams, the positional embedding, the
        codebook query maps, the pooling, sparsemax and the final ``weights · codebook`` product stay
        float32 (the token·codebook scores use a bf16 copy of the codebook).
        Switching back to fp32 after bf16 would be lossy, so it raises: reload the model instead.
        """
        wanted = _PRECISION_ALIASES.get(str(precision).lower())
        if wanted is None:
            raise ConfigError(f"unknown precision {precision!r}; use one of {list(PRECISIONS)}")
        if wanted == self._precision:
            return self
        if wanted == "fp32":
            raise ConfigError("this model's weights were cast to bf16; reload it to run in fp32")
        keep_fp32 = {id(m) for q in (self.fdt.img_query_model, self.fdt.txt_query_model,
                                     self.fdt.audio_query_model) for m in q.modules()}
        for module in self.modules():
            if id(module) in keep_fp32:
                continue
            if isinstance(module, nn.Linear | nn.Conv2d | nn.Embedding):
                module.to(torch.bfloat16)
            elif hasattr(module, "in_proj_weight"):
                module.in_proj_weight.data = module.in_proj_weight.data.to(torch.bfloat16)
                module.in_proj_bias.data = module.in_proj_bias.data.to(torch.bfloat16)
        self.fdt.score_codebook = self.fdt.space_dict.detach().to(torch.bfloat16)
        self._precision = "bf16"
        return self

    def _refresh_score_codebook(self, *_: object) -> None:
        # the bf16 copy of the codebook follows loads and device moves of the float32 master
        if self.fdt.score_codebook is not None:
            self.fdt.score_codebook = self.fdt.space_dict.detach().to(torch.bfloat16)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Sat2Sound:
        super()._apply(fn, recurse)
        self._refresh_score_codebook()
        return self

    @contextlib.contextmanager
    def _compute(self) -> Iterator[None]:
        with torch.inference_mode():
            if self._precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    yield
            else:
                yield

    # ------------------------------------------------------------------ input validation
    def _float_tensor(self, x: object, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise InputError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{what} contains NaN or infinite values")
        return x.to(self.device, torch.float32)

    def _scales(self, scales: int | Sequence[int], batch: int) -> list[int]:
        allowed = self.config.allowed_scales

        def one(value: object) -> int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InputError(f"scales must be an int or a list of ints, got {value!r}")
            return int(value)

        raw: object = scales.tolist() if hasattr(scales, "tolist") else scales  # tensors, numpy
        if isinstance(raw, list | tuple):
            values = [one(s) for s in raw]
            if len(values) != batch:
                raise InputError(f"got {len(values)} scales for a batch of {batch} images")
        else:
            values = [one(raw)] * batch
        bad = sorted({s for s in values if s not in allowed})
        if bad:
            raise InputError(
                f"scale(s) {bad} not supported for sat_type {self.config.sat_type!r}; "
                f"use one of {list(allowed)}"
            )
        return values

    def _metadata(self, metadata: object, batch: int) -> MetadataBatch | None:
        if not self.config.has_metadata:
            given = metadata is not None and not (
                isinstance(metadata, Sequence) and not isinstance(metadata, str)
                and all(m is None for m in metadata))
            if given:
                warnings.warn(
                    f"model {self.config.name!r} has no metadata fuser (metadata_type 'none'); "
                    "the metadata passed to encode_image is ignored",
                    stacklevel=3,
                )
            return None
        return encode_metadata(metadata, self.config.metadata_type, batch).to(self.device)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ encoders
    def _finish(self, query: CodebookQuery, valid: torch.Tensor | None) -> Encoding:
        return Encoding(
            embedding=query.embedding,
            codebook_weights=query.weights,
            token_scores=query.scores,
            token_valid=valid if query.scores is not None else None,
        )

    def image_tokens(self, images: torch.Tensor, scales: int | Sequence[int],
                     metadata: Metadata | Sequence[Metadata | None] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens the image query sees, (B, 196+M, 1024), and their validity (B, 196+M) bool."""
        cfg = self.config
        x = self._float_tensor(images, "images")
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, cfg.img_size, cfg.img_size):
            raise InputError(
                f"images must have shape (B, 3, {cfg.img_size}, {cfg.img_size}) (use image_to_tensor), "
                f"got {tuple(images.shape)}"
            )
        batch = x.shape[0]
        values = self._scales(scales, batch)
        resolution = ground_resolution(values, cfg.sat_type, self.device)
        meta = self._metadata(metadata, batch)
        with self._compute():
            tokens = self.satmae_backbone(x, resolution).float()
            valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=self.device)
            if meta is not None and self.sat_encoder is not None:
                tokens, meta_valid = self.sat_encoder(tokens, meta)
                valid = torch.cat([valid, meta_valid], dim=1)
        return tokens.float(), valid

    def encode_image(self, images: torch.Tensor, scales: int | Sequence[int] = 1,
                     metadata: Metadata | Sequence[Metadata | None] | None = None,
                     return_token_scores: bool = False) -> Encoding:
        """Embed satellite images (B,3,224,224) (the output of ``image_to_tensor``).

        ``scales`` is the zoom level of every image (one int or one per image; bingmap/sentinel
        1, 3 or 5, googleEarth 1), which sets the positional embedding's ground resolution.
        ``metadata`` (withmeta models): one :class:`Metadata` for all images, one per image, or None
        (all unknown; unknown tokens are excluded). A nometa model warns and ignores metadata.
        """
        tokens, valid = self.image_tokens(images, scales, metadata)
        with self._compute():
            query = self.fdt.query(tokens, self.fdt.img_query_model, return_scores=return_token_scores)
        return self._finish(query, valid)

    def audio_frames(self, mels: torch.Tensor) -> torch.Tensor:
        """HTS-AT frame tokens (B, 32, 768) of log-mels (B, 1001, 64)."""
        cfg = self.config
        x = self._float_tensor(mels, "mels")
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or tuple(x.shape[1:]) != (cfg.mel_frames, cfg.mel_bins):
            raise InputError(
                f"mels must have shape (B, {cfg.mel_frames}, {cfg.mel_bins}) (use log_mel), "
                f"got {tuple(mels.shape)}"
            )
        with self._compute():
            frames: torch.Tensor = self.audio_encoder(x)
            return frames.float()

    def encode_audio(self, mels: torch.Tensor, return_token_scores: bool = False) -> Encoding:
        """Embed 10-s log-mel spectrograms (B, 1001, 64) (the output of ``log_mel``)."""
        frames = self.audio_frames(mels)
        with self._compute():
            query = self.fdt.query(frames, self.fdt.audio_query_model, return_scores=return_token_scores)
        valid = torch.ones(frames.shape[:2], dtype=torch.bool, device=self.device)
        return self._finish(query, valid)

    def encode_recording(self, mels: torch.Tensor, batch_size: int = 16) -> Encoding:
        """One embedding for a whole recording from the log-mels of its 10-s windows (W, 1001, 64), as
        :func:`~sat2sound_core.preprocess.audio.log_mel_windows` gives them.

        ``embedding`` (1, 1024) is the mean of the windows' L2-normalised embeddings, so every window
        counts the same. Since each window's embedding is ``w_i·C`` (its sparsemax weights times the
        codebook), that mean is ``(Σ w_i/|e_i|)·C / W``: ``codebook_weights`` (1, 16000) are those
        weights rescaled to sum to 1, which is what heatmaps use. With one window the result has the
        direction and the weights of :meth:`encode_audio`. Windows are embedded ``batch_size`` at a time.
        """
        if not isinstance(mels, torch.Tensor) or mels.ndim != 3 or mels.shape[0] < 1:
            shape = tuple(mels.shape) if isinstance(mels, torch.Tensor) else type(mels).__name__
            raise InputError(f"encode_recording needs log-mels of the windows, (W, 1001, 64) with W >= 1; got "
                             f"{shape}. Make them with log_mel_windows(waveform, sample_rate).")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}.")
        parts = [self.encode_audio(mels[i : i + batch_size]) for i in range(0, mels.shape[0], batch_size)]
        embeddings = torch.cat([p.embedding for p in parts]).double()
        weights = torch.cat([p.codebook_weights for p in parts]).double()
        norms = embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        mean = (embeddings / norms).mean(dim=0, keepdim=True)
        w = (weights / norms).sum(dim=0, keepdim=True)
        return Encoding(embedding=mean.float(), codebook_weights=(w / w.sum()).float(),
                        token_scores=None, token_valid=None)

    def encode_text_states(self, hidden: torch.Tensor, mask: torch.Tensor,
                           return_token_scores: bool = False) -> Encoding:
        """Embed FLAN-T5 encoder hidden states (B, L, 1024) with their token mask (B, L) bool.

        The official multiplicative mask is kept: padded tokens score exactly 0 and still take part
        in the max-pool, as in the official evaluation.
        """
        cfg = self.config
        h = self._float_tensor(hidden, "hidden states")
        if h.ndim != 3 or h.shape[-1] != cfg.text_dim:
            raise InputError(f"hidden states must have shape (B, L, {cfg.text_dim}), got {tuple(hidden.shape)}")
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(h.shape[:2]):
            raise InputError(f"mask must be a tensor of shape {tuple(h.shape[:2])} (True = real token)")
        if mask.dtype != torch.bool:
            if mask.is_floating_point() or not bool(((mask == 0) | (mask == 1)).all()):
                raise InputError("mask must be boolean (or 0/1 integers), True for real tokens")
            mask = mask == 1
        mask = mask.to(self.device)
        if not bool(mask.any(dim=1).all()):
            raise InputError("every text needs at least one real token (a row of the mask is all False)")
        with self._compute():
            query = self.fdt.query(h, self.fdt.txt_query_model, mask=mask, return_scores=return_token_scores)
        return self._finish(query, mask)

    def encode_text(self, texts: Sequence[str], return_token_scores: bool = False) -> Encoding:
        """Embed captions with the attached FLAN-T5 encoder (see :attr:`text_encoder`)."""
        if self._text_encoder is None:
            raise WeightsError(
                "no text encoder is attached to this model; load it with sat2sound_core.load_model(...) "
                "(which attaches FLAN-T5) or set model.text_encoder to an object with encode(texts)"
            )
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError("texts must be a non-empty list of strings")
        hidden, mask = self._text_encoder.encode(list(texts))
        return self.encode_text_states(hidden, mask, return_token_scores=return_token_scores)
