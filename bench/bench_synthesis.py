"""TangoFlux synthesis cost at the real sizes, with random weights (no download needed).

Measures seconds per transformer step (CFG batch of 2, 645 latent frames) and for the prefix decode of
a 10-s clip, in fp32 and bf16, then extrapolates the seconds per 10-s clip at 50 steps (and 25 in the
"fast" mode). Only a handful of steps are run (default 2 after one warm-up) and multiplied out, so
the whole run takes a few minutes on a small CPU. It also reports how far bf16 moves the velocity and
the waveform from fp32, and how much a shorter (12-s) latent would save and change.

With ``--load`` it also writes random weights of the real size in the official file layout, loads them
with ``load_synthesizer`` and, with ``--clip``, times whole ``synthesize()`` calls (10-s clip, 50 steps,
guidance 4.5: T5, both CFG branches, every step and the decode) in fp32 and bf16 — the end-to-end
number for a GPU. On CUDA the transformer step is also timed with TF32 matmuls (``tf32`` rows).

Usage: ``python -m bench synthesis [--steps N] [--full-decode] [--t5] [--load [VOCAB_JSON] [--clip]]
[--device cuda]``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import time
from typing import Any

import torch

from sat2sound_core.synthesis import sampler
from sat2sound_core.synthesis.components import (
    HOP,
    SAMPLE_RATE,
    ConditioningHeads,
    TangoFluxConfig,
    build_t5,
    build_transformer,
    build_vae,
)

TEXT_TOKENS = 32  # a typical Sat2Sound caption is 15-30 T5 tokens; +1 duration token


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Any, device: torch.device) -> tuple[float, Any]:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def bench_transformer(config: TangoFluxConfig, device: torch.device, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    start = time.perf_counter()
    model = build_transformer(config).eval().to(device)
    t_build = time.perf_counter() - start
    heads = ConditioningHeads(config).eval().to(device)
    width = config.text_width
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, TEXT_TOKENS, width, generator=g)
    mask = torch.ones(2, TEXT_TOKENS, dtype=torch.long)
    with torch.inference_mode():
        pooled = heads.fc(sampler.masked_mean(hidden, mask).to(device))
        duration = heads.duration_emebdder(torch.tensor([10.0], device=device)).unsqueeze(1)
        context = torch.cat([hidden.to(device), duration.expand(2, -1, -1)], dim=1)
    noise = torch.randn(1, config.latent_frames, 64, generator=g)
    cond = sampler.Conditioning(hidden, pooled, pooled, duration, context)
    out: dict[str, Any] = {"build_s": round(t_build, 2)}
    results: dict[str, torch.Tensor] = {}
    variants = [("fp32", torch.float32), ("bf16", torch.bfloat16)]
    if device.type == "cuda":
        variants.insert(1, ("tf32", torch.float32))
    for name, dtype in variants:
        model.to(dtype)
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        sampler.flow_sample(model, cond, noise, 1, 4.5)  # warm-up (1 step)
        seconds, latents = _timed(lambda: sampler.flow_sample(model, cond, noise, steps, 4.5), device)
        out[f"step_s_{name}"] = round(seconds / steps, 4)
        results[name] = latents.float().cpu()
        if device.type == "cuda":  # the same steps launched op by op instead of replayed as a CUDA graph
            seconds, eager = _timed(lambda: sampler.flow_sample(model, cond, noise, steps, 4.5, cuda_graph=False),
                                    device)
            out[f"step_s_{name}_eager"] = round(seconds / steps, 4)
            out[f"graph_vs_eager_latents_rel_{name}"] = _rel(latents.float().cpu(), eager.float().cpu())
        # a 12-s latent: cheaper, but Flux attends over every frame, so the first 10 s change
        short_noise = noise[:, : math.ceil(12 * SAMPLE_RATE / HOP)]
        seconds, short = _timed(lambda n=short_noise: sampler.flow_sample(model, cond, n, steps, 4.5), device)
        out[f"step_s_{name}_12s_latent"] = round(seconds / steps, 4)
        keep = math.ceil(10 * SAMPLE_RATE / HOP)
        out[f"latent_change_12s_vs_30s_{name}"] = _rel(short.float().cpu()[:, :keep], latents.float().cpu()[:, :keep])
    torch.backends.cuda.matmul.allow_tf32 = False
    out["bf16_vs_fp32_latents_rel"] = _rel(results["bf16"], results["fp32"])
    if "tf32" in results:
        out["tf32_vs_fp32_latents_rel"] = _rel(results["tf32"], results["fp32"])
    return out


def bench_decode(config: TangoFluxConfig, device: torch.device, full: bool) -> dict[str, Any]:
    """Prefix-decode times in fp32 and bf16 and, with ``full``, the full decode and the margins.

    Everything float32 runs before the bf16 cast: casting the decoder to bf16 and back rounds its
    weights, and any comparison after that would measure the rounding."""
    torch.manual_seed(0)
    vae = build_vae(config).eval().to(device)
    z = torch.randn(1, config.latent_frames, 64, generator=torch.Generator().manual_seed(2), device="cpu")
    out: dict[str, Any] = {"decode_frames_10s": sampler.frames_for(10.0, config.latent_frames)}

    def timed_prefix(**kwargs: Any) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            sampler.decode(vae, z, 10.0, **kwargs)  # warm-up (cuDNN algorithm choice, allocator)
        seconds, wave = _timed(lambda: sampler.decode(vae, z, 10.0, **kwargs), device)
        return seconds, wave.cpu()

    seconds, fp32 = timed_prefix()
    out["decode_10s_prefix_s_fp32"] = round(seconds, 3)
    if device.type == "cuda":  # PyTorch's default: cuDNN convolutions in TF32 (the synthesiser turns that off)
        seconds, wave = timed_prefix(strict_fp32=False)
        out["decode_10s_prefix_s_tf32conv"] = round(seconds, 3)
        out["tf32conv_vs_fp32_waveform_rel"] = _rel(wave, fp32)
    if full:
        seconds, wave = _timed(lambda: sampler.decode(vae, z, 10.0, margin=None), device)
        out["decode_full_645_s_fp32"] = round(seconds, 3)
        out["prefix_vs_full_rel"] = _rel(fp32, wave.cpu())
        for margin in (8, 9):
            out[f"prefix_margin{margin}_vs_full_rel"] = _rel(sampler.decode(vae, z, 10.0, margin=margin).cpu(), wave.cpu())
    vae.to(torch.bfloat16)
    seconds, bf16 = timed_prefix()
    out["decode_10s_prefix_s_bf16"] = round(seconds, 3)
    out["bf16_vs_fp32_waveform_rel"] = _rel(bf16, fp32)
    return out


def bench_t5(config: TangoFluxConfig, device: torch.device) -> dict[str, Any]:
    t5 = build_t5(config).eval().to(device)
    ids = torch.randint(2, int(config.t5["vocab_size"]), (2, TEXT_TOKENS))
    with torch.inference_mode():
        t5(input_ids=ids.to(device))
        seconds, _ = _timed(lambda: t5(input_ids=ids.to(device)), device)
    return {"t5_s": round(seconds, 3)}


def bench_load(config: TangoFluxConfig, vocab: str | None, device: torch.device, clip: bool) -> dict[str, Any]:
    """Write random real-size weights in the official layout, then time ``load_synthesizer`` on them
    (key checks included) and one guided step + a 1-s decode through the public API; with ``clip``,
    whole 10-s, 50-step ``synthesize()`` calls in fp32 and bf16 (best of two after a warm-up)."""
    import json
    import resource
    import shutil
    import tempfile
    from pathlib import Path

    from safetensors.torch import save_file

    from sat2sound_core.synthesis import load_synthesizer
    from sat2sound_core.synthesis.components import TANGOFLUX_CONFIG

    folder = Path(tempfile.mkdtemp(prefix="tangoflux-random-"))
    try:
        state: dict[str, torch.Tensor] = {}
        t5 = build_t5(config)
        for key, value in t5.state_dict().items():
            if key != "encoder.embed_tokens.weight":  # tied; the released file stores only shared.weight
                state["text_encoder." + key] = value.contiguous()
        del t5
        state.update({"transformer." + k: v.contiguous() for k, v in build_transformer(config).state_dict().items()})
        state.update({k: v.contiguous() for k, v in ConditioningHeads(config).state_dict().items()})
        save_file(state, str(folder / "tangoflux.safetensors"))
        del state
        save_file({k: v.contiguous() for k, v in build_vae(config).state_dict().items()}, str(folder / "vae.safetensors"))
        (folder / "config.json").write_text(json.dumps(config.tangoflux))
        if config.tangoflux != TANGOFLUX_CONFIG or not config.is_flan_t5_large:  # a smaller test model
            (folder / "t5_config.json").write_text(json.dumps(config.t5))
            (folder / "vae_config.json").write_text(json.dumps(config.vae))
        if vocab:
            shutil.copy(vocab, folder / "vocab.json")  # no FLAN-T5 tokenizer offline: any vocabulary will do
        gc.collect()
        size = (folder / "tangoflux.safetensors").stat().st_size
        start = time.perf_counter()
        synth = load_synthesizer(folder, device=device, precision="fp32", cache=False)
        load_s = time.perf_counter() - start
        tokens = synth.tokenize("birds chirping near a river")
        start = time.perf_counter()
        synth.synthesize_from_tokens(tokens.input_ids, tokens.attention_mask, 1.0, 1, 4.5)
        _sync(device)
        step_s = time.perf_counter() - start
        out: dict[str, Any] = {
            "load_tangoflux_bytes": size, "load_s": round(load_s, 2), "load_one_step_1s_clip_s": round(step_s, 2),
            "load_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
        if clip:
            waves: dict[str, Any] = {}
            for precision in ("fp32", "bf16"):
                if precision != "fp32":
                    del synth
                    gc.collect()
                    synth = load_synthesizer(folder, device=device, precision=precision, cache=False)
                times = []
                for seed in (0, 1, 2):  # seed 0 warms up (allocator, kernels); the best of the other two
                    seconds, audio = _timed(lambda s=seed, synth=synth: synth.synthesize(
                        "birds chirping near a river", duration=10.0, steps=50, guidance=4.5, seed=s,
                        use_cache=False), device)
                    times.append(seconds)
                    if seed == 1:
                        waves[precision] = torch.from_numpy(audio.samples)
                out[f"clip10s_50steps_end_to_end_s_{precision}"] = round(min(times[1:]), 3)
                out[f"clip10s_50steps_first_call_s_{precision}"] = round(times[0], 3)
            out["clip_bf16_vs_fp32_waveform_rel"] = _rel(waves["bf16"], waves["fp32"])
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench synthesis", description=__doc__)
    parser.add_argument("--steps", type=int, default=2, help="timed transformer steps per precision")
    parser.add_argument("--full-decode", action="store_true", help="also decode all 645 frames (slow on CPU)")
    parser.add_argument("--t5", action="store_true", help="also time the FLAN-T5-large encoder (random weights)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--config-from", metavar="FOLDER", default=None,
                        help="read the sizes from a weights folder (e.g. the tiny reference) instead of the "
                             "released ones: a quick smoke run of this script, not a measurement")
    parser.add_argument("--decode-only", action="store_true", help="only the decoder rows (no transformer)")
    parser.add_argument("--clip", action="store_true",
                        help="with --load: time whole 10-s, 50-step synthesize() calls (fp32 and bf16)")
    parser.add_argument("--load", metavar="VOCAB_JSON", nargs="?", const="", default=None,
                        help="also write random real-size weights (4 GB in a temp dir) and time load_synthesizer "
                             "+ one step; VOCAB_JSON: a vocab.json to tokenize with (e.g. the tiny reference's)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.config_from:
        from pathlib import Path

        from sat2sound_core.synthesis.weights import read_config

        config = read_config(Path(args.config_from))
        print(f"SMOKE RUN: sizes from {args.config_from}, not the released model's")
    else:
        config = TangoFluxConfig()  # the released sizes
    print(f"TangoFlux, random weights, device={device}, torch threads={torch.get_num_threads()}, "
          f"load average={os.getloadavg()[0]:.1f}")
    if device.type == "cpu":
        print("No GPU in this run: CPU numbers only (for the GPU target, <= 2 s per clip on an H100, run this with "
              "--device cuda --steps 50 --load --clip on a GPU machine: bench/gpu_check.sh).")
    print(f"Running {args.steps} timed steps per precision and extrapolating to 50 (paper) and 25 (fast) steps.")
    result: dict[str, Any] = {"device": str(device), "cpu": platform.processor() or platform.machine(),
                              "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
                              "timed_steps": args.steps, "extrapolated": True}
    if args.decode_only:
        result.update(bench_decode(config, device, args.full_decode))
        for key, value in result.items():
            if "decode" in key or key.endswith("_rel"):
                print(f"{key}: {value:.3g}")
        return result
    result.update(bench_transformer(config, device, args.steps))
    gc.collect()
    result.update(bench_decode(config, device, args.full_decode))
    t5_s = 0.0
    if args.t5:
        result.update(bench_t5(config, device))
        t5_s = result["t5_s"]
    if args.load is not None:
        result.update(bench_load(config, args.load or None, device, args.clip))
        print(f"load_synthesizer on random real-size weights ({result['load_tangoflux_bytes']} B file): "
              f"{result['load_s']} s; one guided step + 1-s decode: {result['load_one_step_1s_clip_s']} s; "
              f"peak RSS {result['load_peak_rss_gib']} GiB")
        for precision in ("fp32", "bf16"):
            key = f"clip10s_50steps_end_to_end_s_{precision}"
            if key in result:
                print(f"synthesize(): 10-s clip, 50 steps, {precision}, end to end on {device}: {result[key]:.2f} s "
                      f"(first call {result[f'clip10s_50steps_first_call_s_{precision}']:.2f} s)")
    for name in ("fp32", "bf16"):
        for label, steps in (("50", 50), ("fast25", 25)):
            # the transformer in `name`; the decoder always fp32 (as the synthesiser runs it)
            total = steps * result[f"step_s_{name}"] + result["decode_10s_prefix_s_fp32"] + t5_s
            result[f"clip10s_{label}steps_s_{name}"] = round(total, 1)
    rows = [
        ("transformer step (CFG batch 2, 645 frames)", "step_s_fp32", "step_s_bf16"),
        ("transformer step, 12-s latent (not default)", "step_s_fp32_12s_latent", "step_s_bf16_12s_latent"),
        ("decode first 10 s (prefix)", "decode_10s_prefix_s_fp32", "decode_10s_prefix_s_bf16"),
        ("10-s clip, 50 steps (extrapolated)", "clip10s_50steps_s_fp32", "clip10s_50steps_s_bf16"),
        ("10-s clip, 25 steps 'fast' (extrapolated)", "clip10s_fast25steps_s_fp32", "clip10s_fast25steps_s_bf16"),
    ]
    print(f"\n{'':46s} {'fp32 s':>9s} {'bf16 s':>9s}")
    for label, a, b in rows:
        print(f"{label:46s} {result[a]:9.2f} {result[b]:9.2f}")
    print("(clip totals use the fp32 decoder; the bf16 column changes only the transformer)")
    for name in ("fp32", "tf32", "bf16"):
        if f"step_s_{name}_eager" in result:
            print(f"{name} step: {result[f'step_s_{name}']:.4f} s as a CUDA graph, {result[f'step_s_{name}_eager']:.4f} s "
                  f"eager (latents differ by {result[f'graph_vs_eager_latents_rel_{name}']:.3g})")
    if "step_s_tf32" in result:
        print(f"transformer step with TF32 matmuls: {result['step_s_tf32']:.4f} s "
              f"(latents vs fp32: {result['tf32_vs_fp32_latents_rel']:.3g})")
    if "decode_10s_prefix_s_tf32conv" in result:
        print(f"decode first 10 s with TF32 convolutions (PyTorch's default, not used): "
              f"{result['decode_10s_prefix_s_tf32conv']:.3f} s, waveform vs fp32 {result['tf32conv_vs_fp32_waveform_rel']:.3g}")
    for key in ("bf16_vs_fp32_latents_rel", "clip_bf16_vs_fp32_waveform_rel", "bf16_vs_fp32_waveform_rel", "latent_change_12s_vs_30s_fp32",
                "prefix_vs_full_rel", "prefix_margin8_vs_full_rel", "prefix_margin9_vs_full_rel", "t5_s"):
        if key in result:
            print(f"{key}: {result[key]:.3g}")
    return result
