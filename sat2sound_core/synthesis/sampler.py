"""The TangoFlux sampling path: text and duration conditioning, the rectified-flow Euler loop with
classifier-free guidance, and the waveform decode.

Everything here is a pure function of modules and tensors so tests can compare each stage with the
reference outputs of the official code. Row layout of a guided batch is ``[uncond_1..k, cond_1..k]``;
all rows share one token length because Flux has no attention mask and attends to pad tokens.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sat2sound_core.accel.options import options
from sat2sound_core.common.errors import InputError
from sat2sound_core.common.progress import CancelToken, ProgressCallback
from sat2sound_core.synthesis.components import HOP, SAMPLE_RATE

# Measured on the Oobleck decoder (docs/synthesis.md, tests/sat2sound_core/synthesis/test_decode.py): a
# latent frame changes output samples up to 9.25 frames to its left, so decoding the frames a duration
# covers plus 10 more reproduces the full decode for every duration (8 and 9 fail for some durations).
DECODE_MARGIN_FRAMES = 10

log = logging.getLogger(__name__)


@dataclass
class Conditioning:
    """Flux inputs for a batch of rows: context tokens (text + duration) and the pooled vector."""

    t5_hidden: torch.Tensor  # (rows, L, D) T5 last hidden state, pad positions included
    pooled_mean: torch.Tensor  # (rows, D) mean over mask == 1
    pooled_projection: torch.Tensor  # (rows, joint) relu(fc(pooled_mean))
    duration_token: torch.Tensor  # (1, 1, D)
    encoder_hidden_states: torch.Tensor  # (rows, L + 1, D)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` over the positions where ``mask`` is 1 (what the official NaN-fill + nanmean does)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


@torch.no_grad()
def condition(
    t5: nn.Module,
    heads: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    seconds: float | torch.Tensor,
) -> Conditioning:
    """Run T5 on ``input_ids`` (rows of equal length), pool, project and append the duration token."""
    device = next(t5.parameters()).device
    input_ids = input_ids.to(device)
    attention_mask = attention_mask.to(device)
    hidden = t5(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
    pooled = masked_mean(hidden, attention_mask)
    head_device = next(heads.parameters()).device
    projection = heads.fc(pooled.to(head_device))
    seconds_t = seconds if isinstance(seconds, torch.Tensor) else torch.tensor([seconds])
    duration = heads.duration_emebdder(seconds_t.to(head_device)).unsqueeze(1)  # (1, 1, D)
    context = torch.cat([hidden.to(head_device), duration.expand(hidden.shape[0], -1, -1)], dim=1)
    return Conditioning(hidden, pooled, projection, duration, context)


def sigmas_for(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(timesteps, sigmas) of ``FlowMatchEulerDiscreteScheduler(1000)`` after ``set_timesteps(sigmas=linspace(1, 1/N, N))``.

    ``sigmas`` has N + 1 entries (the terminal 0 appended); ``timesteps = 1000 · σ``.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler: Any = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist(), device="cpu")
    return scheduler.timesteps.clone(), scheduler.sigmas.clone()


def position_ids(frames: int, text_tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE ids: ``(i, i, i)`` for latent frame i, zeros for every context token (2-D, as diffusers wants)."""
    img = torch.arange(frames, dtype=torch.float32, device=device).unsqueeze(1).repeat(1, 3)
    txt = torch.zeros(text_tokens, 3, dtype=torch.float32, device=device)
    return img, txt


StepHook = Callable[[int, dict[str, torch.Tensor]], None]
StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GraphedStep:
    """One transformer forward captured as a CUDA graph and replayed for every step.

    Eager PyTorch spends more time launching Flux's ~1,000 small kernels than the GPU spends running
    them (measured: docs/synthesis.md); a graph launches them all at once. Each replay runs exactly
    the captured kernels on new inputs copied into the static buffers, so results equal the eager
    forward's. The output buffer is overwritten by the next replay: use it before calling again.
    """

    def __init__(self, step: StepFn, model_in: torch.Tensor, timestep: torch.Tensor) -> None:
        self._in = model_in.clone()
        self._t = timestep.clone()
        side = torch.cuda.Stream(model_in.device)
        side.wait_stream(torch.cuda.current_stream(model_in.device))
        with torch.cuda.stream(side):  # warm up off the default stream (allocator, kernel selection)
            for _ in range(2):
                step(self._in, self._t)
        torch.cuda.current_stream(model_in.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        # thread_local: the app's map clicks may run the Sat2Sound model on the same GPU from another
        # thread while this one captures; only this thread's calls are restricted during the capture
        with torch.cuda.graph(self._graph, capture_error_mode="thread_local"):
            self._out = step(self._in, self._t)

    def __call__(self, model_in: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        self._in.copy_(model_in)
        self._t.copy_(timestep)
        self._graph.replay()
        return self._out


def _graphed(step: StepFn, model_in: torch.Tensor, timestep: torch.Tensor) -> StepFn:
    """``step`` as a :class:`GraphedStep`, or ``step`` itself where capture fails (logged once)."""
    try:
        return GraphedStep(step, model_in, timestep)
    except Exception as exc:  # capture is an optimisation: any failure falls back to the eager step
        log.warning("CUDA graph capture of the transformer step failed (%s); running it eagerly. "
                    "Set SAT2SOUND_CUDA_GRAPHS=0 to skip the attempt.", exc)
        torch.cuda.synchronize(model_in.device)
        return step


@torch.no_grad()
def flow_sample(
    transformer: nn.Module,
    cond: Conditioning,
    init_noise: torch.Tensor,
    steps: int,
    guidance: float,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_step: StepHook | None = None,
    cuda_graph: bool | None = None,
) -> torch.Tensor:
    """Integrate the flow from ``init_noise`` (k, frames, 64) at σ=1 to σ=0 and return the latents (fp32).

    With ``guidance > 1`` the conditioning holds 2k rows ``[uncond…, cond…]`` and each step runs one
    transformer forward on ``[x, x]`` and uses ``v_u + g·(v_c − v_u)``; otherwise it holds k conditional
    rows and the unconditional branch is skipped. Latents and the Euler update stay in float32 whatever
    the transformer's dtype. ``on_step`` receives the raw and guided velocities and the new latents.
    On a GPU the step is replayed as a CUDA graph (``cuda_graph``; default ``SAT2SOUND_CUDA_GRAPHS``)
    when there are at least 3 steps, and nothing in the loop waits for the GPU.
    """
    k = init_noise.shape[0]
    guided = guidance > 1.0
    rows = cond.encoder_hidden_states.shape[0]
    if rows != (2 * k if guided else k):
        raise InputError(
            f"conditioning has {rows} rows for {k} latents (guided={guided}); encode the captions with the same "
            f"guidance ({2 * k if guided else k} rows: unconditional then conditional when guidance > 1)"
        )
    param = next(transformer.parameters())
    device, dtype = param.device, param.dtype
    timesteps, sigmas = sigmas_for(steps)
    # one transfer before the loop: a per-step copy from host memory would make every step wait for the GPU
    timesteps_dev = (timesteps / 1000).to(device)
    deltas = (sigmas[1:] - sigmas[:-1]).tolist()  # float32 values, exact as Python floats
    frames = init_noise.shape[1]
    img_ids, txt_ids = position_ids(frames, cond.encoder_hidden_states.shape[1], device)
    context = cond.encoder_hidden_states.to(device=device, dtype=dtype)
    pooled = cond.pooled_projection.to(device=device, dtype=dtype)
    x = init_noise.to(device=device, dtype=torch.float32)

    def step(model_in: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        velocity: torch.Tensor = transformer(
            hidden_states=model_in.to(dtype),
            encoder_hidden_states=context,
            pooled_projections=pooled,
            timestep=timestep,
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=None,
            return_dict=False,
        )[0]
        return velocity

    use_graph = options().cuda_graphs if cuda_graph is None else cuda_graph
    run: StepFn = step
    for i in range(steps):
        if cancel is not None:
            cancel.check()
        model_in = torch.cat([x, x]) if guided else x
        timestep = timesteps_dev[i : i + 1]
        if i == 0 and use_graph and device.type == "cuda" and steps >= 3:
            run = _graphed(step, model_in, timestep)
        out = run(model_in, timestep).float()
        if on_step is not None and run is not step:
            out = out.clone()  # the graph's output buffer is reused by the next step
        if guided:
            v_u, v_c = out.chunk(2)
            v = v_u + guidance * (v_c - v_u)
        else:
            v = out
        x = x + deltas[i] * v
        if on_step is not None:
            on_step(i, {"transformer_input": model_in, "velocity_batch": out, "velocity": v, "latents": x})
        if progress is not None:
            progress(i + 1, steps, f"step {i + 1}/{steps}")
    return x


def samples_for(seconds: float) -> int:
    """Samples kept for ``seconds`` (the official trim ``int(seconds · 44100)``)."""
    return int(seconds * SAMPLE_RATE)


def frames_for(seconds: float, total_frames: int, margin: int = DECODE_MARGIN_FRAMES) -> int:
    """Latent frames to decode for ``seconds`` of audio: those covering it plus the decoder's margin."""
    return min(total_frames, math.ceil(samples_for(seconds) / HOP) + margin)


@torch.no_grad()
def decode(
    vae: Any, latents: torch.Tensor, seconds: float, *, margin: int | None = DECODE_MARGIN_FRAMES,
    strict_fp32: bool = True,
) -> torch.Tensor:
    """Waveforms ``(k, channels, int(seconds·44100))`` float32 from latents ``(k, frames, 64)``.

    With ``margin=None`` the whole latent is decoded (the official path); otherwise only the frames the
    duration needs plus ``margin`` frames, which gives the same samples (the decoder's receptive field is
    short) at a fraction of the cost. On a GPU a float32 decoder runs its cuDNN convolutions without
    TF32 (``strict_fp32``; PyTorch's default allows TF32 there), so float32 means float32: TF32 moved
    the 10-s waveform by 9e-4 relative on an H100, outside the reference tolerance, and saved 27 ms.
    """
    total = latents.shape[1]
    used = total if margin is None else frames_for(seconds, total, margin)
    param = next(vae.parameters())
    z = latents[:, :used].transpose(1, 2).to(device=param.device, dtype=param.dtype)
    if strict_fp32 and param.device.type == "cuda" and param.dtype == torch.float32:
        cudnn = torch.backends.cudnn
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            wave = vae.decode(z).sample
    else:
        wave = vae.decode(z).sample
    out: torch.Tensor = wave[:, :, : samples_for(seconds)].float()
    return out
