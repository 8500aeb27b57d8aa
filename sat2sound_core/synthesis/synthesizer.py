"""The TangoFlux synthesiser: load the weights once, turn captions into 44.1-kHz stereo clips.

Faithful to the official inference (declare-lab/TangoFlux, ``inference_flow`` + ``generate``): the same
conditioning, noise, sigmas, guidance and trim, checked stage by stage against reference outputs.
It differs only where the output does not change: the waveform decoder runs on just the latent frames
the duration needs (plus the decoder's measured receptive-field margin), several captions share a
forward pass only when they have the same token length (Flux attends to pad tokens, so padding would
change results), and ``guidance <= 1`` skips the unconditional branch instead of crashing.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import torch
from torch import nn

from sat2sound_core.common import devices
from sat2sound_core.common.devices import resolve_device, torch_dtype
from sat2sound_core.common.errors import InputError
from sat2sound_core.common.progress import CancelToken, ProgressCallback
from sat2sound_core.synthesis import sampler
from sat2sound_core.synthesis.audio import Audio
from sat2sound_core.synthesis.cache import AudioCache, request_key
from sat2sound_core.synthesis.components import (
    HOP,
    LATENT_CHANNELS,
    SAMPLE_RATE,
    ConditioningHeads,
    TangoFluxConfig,
    build_t5,
    build_transformer,
    build_vae,
)
from sat2sound_core.synthesis.tokenizer import (
    CaptionTokenizer,
    Tokens,
    load_tokenizer,
    tokenize_caption,
    unconditional_tokens,
)
from sat2sound_core.synthesis.weights import (
    EXPECTED_MISSING,
    WeightsLocation,
    check_keys,
    expected_shapes,
    load_into,
    read_config,
    resolve_weights,
)

log = logging.getLogger(__name__)

LICENCE_NOTE = (
    "Sound synthesis uses TangoFlux (declare-lab/TangoFlux), whose weights are released for "
    "non-commercial research use only. They are also subject to the Stability AI Community License "
    "(its VAE comes from Stable Audio Open; Powered by Stability AI) and to the terms of the datasets it "
    "was trained on (WavCaps: academic use only). Do not use synthesised audio commercially."
)
PAPER_STEPS = 50
PAPER_GUIDANCE = 4.5
FAST_STEPS = 25  # the TangoFlux README: 25 steps sound similar to 50 at half the cost
MAX_BATCH = 4  # captions per transformer forward (each is 2 rows with guidance)


def transformer_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The transformer's dtype for ``fp32``, ``bf16`` or ``auto`` (:mod:`sat2sound_core.common.devices`).

    bf16 changes TangoFlux's output by more than the reference tolerance (the 10-s waveform moves by
    1.7e-2 relative on random full-size weights: a different sample of the same model; docs/synthesis.md),
    so ``auto`` picks bf16 only where it pays for that: where bf16 GEMMs are at least
    :data:`~sat2sound_core.common.devices.SYNTHESIS_MIN_BF16_SPEEDUP` (3×) faster than fp32 (AMX CPUs,
    measured 5.75×; CUDA), and fp32 elsewhere (an AVX512-BF16 CPU at ~2×). T5, the two heads, the
    latents and Euler update, and the VAE always stay in float32.
    """
    return torch_dtype(devices.resolve_precision(
        precision, device, min_bf16_speedup=devices.SYNTHESIS_MIN_BF16_SPEEDUP))


def _precision_name(dtype: torch.dtype) -> str:
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def initial_noise(seed: int, frames: int = 645) -> torch.Tensor:
    """The official starting latent: ``manual_seed(seed); randn(1, 645, 64)`` on CPU; the first ``frames``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(1, max(645, frames), LATENT_CHANNELS, generator=g)[:, :frames]


@dataclass(frozen=True)
class Request:
    """One caption's validated synthesis parameters (what the cache key is made of)."""

    caption: str
    duration: float
    steps: int
    guidance: float
    seed: int
    latent_frames: int
    fast: bool


class Synthesizer:
    """TangoFlux inference on loaded modules; build it with :func:`load_synthesizer`.

    ``synthesize`` is the everyday entry (captions → :class:`Audio`, cached on disk);
    ``synthesize_from_tokens`` is the exact low-level path reference outputs are checked through.
    Calls are serialised with a lock, so one instance can serve a multi-threaded app.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        *,
        config: TangoFluxConfig,
        t5: nn.Module,
        tokenizer: CaptionTokenizer,
        transformer: nn.Module,
        heads: Any,
        vae: Any,
        device: torch.device,
        dtype: torch.dtype,
        weights: WeightsLocation,
        cache_dir: Path | None = None,
        decode_margin: int | None = sampler.DECODE_MARGIN_FRAMES,
    ) -> None:
        self.config = config
        self.t5 = t5
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.heads = heads
        self.vae = vae
        self.device = device
        self.dtype = dtype
        self.weights = weights
        self.cache = AudioCache(cache_dir) if cache_dir is not None else None
        self.decode_margin = decode_margin
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ properties
    @property
    def max_duration(self) -> float:
        return self.config.max_duration

    @property
    def latent_frames(self) -> int:
        return self.config.latent_frames

    @property
    def precision(self) -> str:
        return _precision_name(self.dtype)

    licence_note = LICENCE_NOTE

    # ------------------------------------------------------------------ validation
    def _check_duration(self, duration: float) -> float:
        try:
            value = float(duration)
        except (TypeError, ValueError):
            raise InputError(f"duration {duration!r} is not a number of seconds.") from None
        if not (math.isfinite(value) and 0 < value <= self.max_duration):
            raise InputError(
                f"duration {duration!r} s is outside (0, {self.max_duration:g}]; TangoFlux makes clips of "
                f"up to {self.max_duration:g} s. Pick a length in that range (the paper uses 10 s)."
            )
        return value

    @staticmethod
    def _check_steps(steps: int) -> int:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps={steps!r}: use a whole number >= 1 (the paper uses {PAPER_STEPS}).")
        return steps

    @staticmethod
    def _check_guidance(guidance: float) -> float:
        try:
            value = float(guidance)
        except (TypeError, ValueError):
            raise InputError(f"guidance {guidance!r} is not a number.") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(
                f"guidance={guidance!r}: use a finite number >= 0 (<= 1 turns guidance off; "
                f"the paper uses {PAPER_GUIDANCE})."
            )
        return value

    def _frames_for_latent(self, latent_seconds: float | None, duration: float) -> int:
        total = self.latent_frames
        if latent_seconds is None:
            return total
        seconds = self._check_duration(latent_seconds)
        frames = min(total, math.ceil(seconds * SAMPLE_RATE / HOP))
        if frames * HOP < sampler.samples_for(duration):
            raise InputError(f"latent_seconds={latent_seconds} is shorter than the duration {duration} s.")
        return frames

    def tokenize(self, caption: str) -> Tokens:
        """Token ids of one caption (64-token limit, warns on truncation; refuses empty captions)."""
        return tokenize_caption(self.tokenizer, caption)

    # ------------------------------------------------------------------ low level
    def synthesize_from_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        duration: float = 10.0,
        steps: int = PAPER_STEPS,
        guidance: float = PAPER_GUIDANCE,
        init_noise: torch.Tensor | None = None,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        trace: dict[str, Any] | None = None,
        full_decode: bool = False,
    ) -> torch.Tensor:
        """Waveforms ``(k, 2, int(duration·44100))`` float32 (CPU) for ``k`` token rows of one length.

        ``input_ids``/``attention_mask`` ``(k, L)`` are the captions' tokens (``</s>`` included). The
        unconditional rows are the empty caption padded to ``L``. ``init_noise`` ``(k, frames, 64)``
        defaults to seed 0's; fewer than 645 frames runs the model on a shorter latent. With ``trace``
        the intermediate tensors are stored in it (conditioning, every step's velocities and latents).
        ``full_decode`` decodes every latent frame as the official code does.
        """
        duration = self._check_duration(duration)
        steps = self._check_steps(steps)
        guidance = self._check_guidance(guidance)
        if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
            raise InputError("input_ids and attention_mask must both be (rows, length) tensors.")
        k, length = input_ids.shape
        if init_noise is None:
            init_noise = torch.cat([initial_noise(0, self.latent_frames)] * k)
        if init_noise.ndim != 3 or init_noise.shape[0] != k or init_noise.shape[2] != LATENT_CHANNELS:
            raise InputError(f"init_noise must be ({k}, frames, {LATENT_CHANNELS}); got {tuple(init_noise.shape)}.")
        if init_noise.shape[1] * HOP < sampler.samples_for(duration):
            raise InputError(f"init_noise has too few frames for {duration} s.")
        guided = guidance > 1.0
        with self._lock, torch.inference_mode():
            if guided:
                u_ids, u_mask = unconditional_tokens(length, k)
                ids = torch.cat([u_ids, input_ids.long()])
                mask = torch.cat([u_mask, attention_mask.long()])
            else:
                ids, mask = input_ids.long(), attention_mask.long()
            cond = sampler.condition(self.t5, self.heads, ids, mask, torch.tensor([duration]))
            if trace is not None:
                trace.update(
                    input_ids=ids, attention_mask=mask, t5_hidden=cond.t5_hidden, pooled_mean=cond.pooled_mean,
                    pooled_projection=cond.pooled_projection, duration_token=cond.duration_token,
                    encoder_hidden_states=cond.encoder_hidden_states, steps=[],
                )

            def on_step(i: int, values: dict[str, torch.Tensor]) -> None:
                if trace is not None:
                    trace["steps"].append({k2: v.detach().float().cpu() for k2, v in values.items()})

            def step_progress(done: float, total: float, message: str) -> None:
                if progress is not None:
                    progress(done, total + 1, message)

            latents = sampler.flow_sample(
                self.transformer, cond, init_noise, steps, guidance,
                progress=step_progress, cancel=cancel, on_step=on_step if trace is not None else None,
            )
            if cancel is not None:
                cancel.check()
            if progress is not None:
                progress(steps, steps + 1, "decoding waveform")
            wave = sampler.decode(self.vae, latents, duration, margin=None if full_decode else self.decode_margin)
            if trace is not None:
                trace["final_latents"] = latents.float().cpu()
            if progress is not None:
                progress(steps + 1, steps + 1, "done")
            return wave.float().cpu()

    # ------------------------------------------------------------------ everyday API
    @overload
    def synthesize(
        self, caption: str, duration: float = ..., steps: int = ..., guidance: float = ...,
        seed: int | Sequence[int] = ..., progress: ProgressCallback | None = ..., *, cancel: CancelToken | None = ...,
        fast: bool = ..., latent_seconds: float | None = ..., use_cache: bool = ...,
    ) -> Audio: ...

    @overload
    def synthesize(
        self, caption: list[str] | tuple[str, ...], duration: float = ..., steps: int = ..., guidance: float = ...,
        seed: int | Sequence[int] = ..., progress: ProgressCallback | None = ..., *, cancel: CancelToken | None = ...,
        fast: bool = ..., latent_seconds: float | None = ..., use_cache: bool = ...,
    ) -> list[Audio]: ...

    def synthesize(
        self,
        caption: str | Sequence[str],
        duration: float = 10.0,
        steps: int = PAPER_STEPS,
        guidance: float = PAPER_GUIDANCE,
        seed: int | Sequence[int] = 0,
        progress: ProgressCallback | None = None,
        *,
        cancel: CancelToken | None = None,
        fast: bool = False,
        latent_seconds: float | None = None,
        use_cache: bool = True,
    ) -> Audio | list[Audio]:
        """Synthesise ``duration`` seconds for a caption (→ :class:`Audio`) or a list of captions (→ list).

        Defaults are the paper's (50 steps, guidance 4.5, seed 0 like the official code). ``fast=True``
        caps the steps at 25 (labelled "fast" in the clip's metadata; not the paper's setting).
        ``latent_seconds`` runs the model on a latent shorter than 30 s — cheaper, but it changes the
        result (see docs/synthesis.md), so it is off by default. Captions with the same token length are
        batched; each result equals the one-caption call. ``progress(done, total, message)`` is called per
        step; raise :class:`~sat2sound_core.common.progress.Cancelled` from it or cancel ``cancel`` to stop.
        """
        single = isinstance(caption, str)
        captions = [caption] if isinstance(caption, str) else list(caption)
        if not captions:
            raise InputError("no captions given.")
        seeds = [seed] * len(captions) if isinstance(seed, int) else list(seed)
        if len(seeds) != len(captions) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise InputError("seed must be an int or one int per caption.")
        duration = self._check_duration(duration)
        steps = self._check_steps(steps)
        guidance = self._check_guidance(guidance)
        if fast:
            steps = min(steps, FAST_STEPS)
        frames = self._frames_for_latent(latent_seconds, duration)
        tokens = [self.tokenize(c) for c in captions]
        requests = [
            Request(c.strip(), duration, steps, guidance, s, frames, fast) for c, s in zip(captions, seeds, strict=True)
        ]
        keys = [self._cache_key(r) for r in requests]
        results: list[Audio | None] = [None] * len(captions)
        if use_cache and self.cache is not None:
            for i, key in enumerate(keys):
                results[i] = self.cache.get(key)
        todo = [i for i, r in enumerate(results) if r is None]
        groups: dict[int, list[int]] = {}
        for i in todo:
            groups.setdefault(tokens[i].length, []).append(i)
        batches = [idx[j : j + MAX_BATCH] for idx in groups.values() for j in range(0, len(idx), MAX_BATCH)]
        for b, batch in enumerate(batches):
            ids = torch.cat([tokens[i].input_ids for i in batch])
            mask = torch.cat([tokens[i].attention_mask for i in batch])
            noise = torch.cat([initial_noise(seeds[i], frames) for i in batch])

            def batch_progress(done: float, total: float, message: str, b: int = b) -> None:
                if progress is not None:
                    progress(b * total + done, len(batches) * total, message)

            waves = self.synthesize_from_tokens(
                ids, mask, duration, steps, guidance, noise, progress=batch_progress, cancel=cancel
            )
            for row, i in enumerate(batch):
                audio = Audio(waves[row].numpy(), SAMPLE_RATE, self._metadata(requests[i], tokens[i]))
                if use_cache and self.cache is not None:
                    self.cache.put(keys[i], audio)
                    audio.metadata["cache"] = "stored"
                results[i] = audio
        done = [r for r in results if r is not None]
        return done[0] if single else done

    def _cache_key(self, r: Request) -> str:
        return request_key({
            "caption": r.caption, "duration": r.duration, "steps": r.steps, "guidance": r.guidance,
            "seed": r.seed, "latent_frames": r.latent_frames, "weights": self.weights.revision,
            "precision": self.precision, "decode": "prefix" if self.decode_margin is not None else "full",
        })

    def _metadata(self, r: Request, tokens: Tokens) -> dict[str, Any]:
        return {
            "model": "TangoFlux",
            "caption": r.caption,
            "duration": r.duration,
            "steps": r.steps,
            "guidance": r.guidance,
            "seed": r.seed,
            "mode": f"fast ({r.steps} steps; the paper uses {PAPER_STEPS})" if r.fast else "faithful",
            "latent_seconds": round(r.latent_frames * HOP / SAMPLE_RATE, 3),
            "weights": self.weights.source,
            "weights_revision": self.weights.revision,
            "precision": self.precision,
            "device": str(self.device),
            "truncated_caption_tail": tokens.truncated,
            "licence": "non-commercial (TangoFlux); Powered by Stability AI",
        }


def _meta_build(build: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return build()


def _t5_key(config: TangoFluxConfig, weights: WeightsLocation, device: torch.device) -> str:
    dtype = torch.float32
    if config.is_flan_t5_large:
        return f"flan-t5-large|{device}|{dtype}"
    return f"tangoflux-t5|{weights.folder.resolve()}|{weights.revision}|{device}|{dtype}"


def load_synthesizer(
    source: str | Path | None = None,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    *,
    progress: ProgressCallback | None = None,
    cache: bool = True,
) -> Synthesizer:
    """Load TangoFlux from ``source`` (default ``SAT2SOUND_TANGOFLUX``: ``declare-lab/TangoFlux``).

    ``source`` is a Hugging Face repo id, ``hf-hub:org/name[@revision]`` or a folder in the official
    layout; missing files are downloaded with progress unless offline (then the error names the files
    and their sizes). Every tensor's key and shape is checked against the architecture (the only key
    allowed to be absent is T5's tied input embedding). The T5 encoder is shared process-wide through
    :func:`sat2sound_core.common.shared.shared`. ``precision`` applies to the flow transformer.
    Synthesis is non-commercial: show :data:`LICENCE_NOTE` where users turn it on.
    """
    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.common.shared import peek, shared

    settings = get_settings()
    dev = resolve_device(device)
    dtype = transformer_dtype(precision, dev)
    weights = resolve_weights(str(source if source is not None else settings.tangoflux), progress=progress)
    config = read_config(weights.folder)
    tokenizer = load_tokenizer(weights.folder, progress=progress)

    t5_meta = _meta_build(lambda: build_t5(config))
    transformer = _meta_build(lambda: build_transformer(config))
    heads = _meta_build(lambda: ConditioningHeads(config))
    vae = _meta_build(lambda: build_vae(config))
    expected = {
        **expected_shapes(t5_meta, "text_encoder."),
        **expected_shapes(transformer, "transformer."),
        **expected_shapes(heads),
    }
    check_keys(weights.tangoflux_file, expected, allowed_missing=EXPECTED_MISSING)
    check_keys(weights.vae_file, expected_shapes(vae))

    def build_t5_loaded() -> nn.Module:
        load_into(t5_meta, weights.tangoflux_file, "text_encoder.",
                  tied={"encoder.embed_tokens.weight": "shared.weight"})
        return t5_meta.to(dev).eval()

    key = _t5_key(config, weights, dev)
    if peek(key) is not None:
        log.info("reusing the shared T5 encoder %s", key)
    t5 = shared(key, build_t5_loaded)

    if progress is not None:
        progress(0, 3, "loading TangoFlux transformer")
    load_into(transformer, weights.tangoflux_file, "transformer.")
    load_into(heads, weights.tangoflux_file, only=("fc.", "duration_emebdder."))
    if progress is not None:
        progress(2, 3, "loading VAE")
    load_into(vae, weights.vae_file)
    transformer = transformer.to(device=dev, dtype=dtype).eval()
    heads = heads.to(dev).eval()
    vae = vae.to(dev).eval()
    if progress is not None:
        progress(3, 3, "TangoFlux ready")
    cache_dir = settings.cache_dir("synthesis") if cache else None
    return Synthesizer(
        config=config, t5=t5, tokenizer=tokenizer, transformer=transformer, heads=heads, vae=vae,
        device=dev, dtype=dtype, weights=weights, cache_dir=cache_dir,
    )
