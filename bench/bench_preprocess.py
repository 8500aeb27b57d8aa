"""Preprocessing and loading speed: image_to_tensor, log_mel, log_mel_windows, load_model (cold vs cached).

Usage: ``python -m bench preprocess [--no-load] [--repeat=N]``. Loading uses a synthetic official
checkpoint written by the reference ``make_weights.py`` (``SAT2SOUND_REFERENCE`` or
``../shared/reference``) into a temporary folder; ``--no-load`` skips it. Numbers depend on the load
of the machine: run it on an otherwise idle machine when the figures matter.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up (caches, lazy imports)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _reference() -> Path:
    env = os.environ.get("SAT2SOUND_REFERENCE")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _bench_loading(rows: list[tuple[str, float, str]]) -> dict[str, float]:
    ref = _reference() / "sat2sound"
    if not (ref / "make_weights.py").is_file():
        print(f"(skipping load_model: no reference at {ref})")
        return {}
    spec = importlib.util.spec_from_file_location("make_weights", ref / "make_weights.py")
    assert spec and spec.loader
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.weights.loading import clear_model_cache, load_model

    previous_home = os.environ.get("SAT2SOUND_HOME")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SAT2SOUND_HOME"] = str(Path(tmp) / "home")  # a throw-away cache, restored below
        get_settings.cache_clear()
        ckpt = Path(tmp) / "bingmap_withmeta.ckpt"
        make.make_checkpoint(str(ref / "manifest_bingmap_withmeta.json"), str(ckpt), 0)
        t = time.perf_counter()
        load_model(ckpt, text_encoder=False)
        cold = time.perf_counter() - t
        clear_model_cache()
        t = time.perf_counter()
        load_model(ckpt, text_encoder=False)
        warm = time.perf_counter() - t
        clear_model_cache()
    if previous_home is None:
        os.environ.pop("SAT2SOUND_HOME", None)
    else:
        os.environ["SAT2SOUND_HOME"] = previous_home
    get_settings.cache_clear()
    rows.append(("load_model, official .ckpt (unpickle + convert + cache)", cold, "s"))
    rows.append(("load_model, cached safetensors", warm, "s"))
    return {"load_cold_s": cold, "load_cached_s": warm}


def main(argv: list[str]) -> dict:
    from sat2sound_core.preprocess.audio import log_mel, log_mel_windows
    from sat2sound_core.preprocess.image import image_to_tensor

    repeat = 5
    for arg in argv:
        if arg.startswith("--repeat="):
            repeat = max(1, int(arg.split("=", 1)[1]))
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, size=(1500, 1500, 3), dtype=np.uint8)
    clip = (0.1 * rng.standard_normal((2, 44100 * 10))).astype(np.float32)
    long_clip = (0.1 * rng.standard_normal(32000 * 60)).astype(np.float32)
    rows: list[tuple[str, float, str]] = []
    result: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "repeat": repeat}
    for zoom in (1, 3, 5):
        s = _time(lambda z=zoom: image_to_tensor(tile, z, "bingmap"), repeat)
        rows.append((f"image_to_tensor bingmap 1500² zoom {zoom}", 1 / s, "images/s"))
        result[f"image_zl{zoom}_per_s"] = 1 / s
    s = _time(lambda: log_mel(clip, 44100), repeat)
    rows.append(("log_mel 10 s stereo 44.1 kHz (resample + mel)", 1 / s, "clips/s"))
    result["log_mel_44k_stereo_per_s"] = 1 / s
    s = _time(lambda: log_mel(long_clip[: 32000 * 10], 32000), repeat)
    rows.append(("log_mel 10 s mono 32 kHz (mel only)", 1 / s, "clips/s"))
    result["log_mel_32k_per_s"] = 1 / s
    s = _time(lambda: log_mel_windows(long_clip, 32000), repeat)
    rows.append(("log_mel_windows 60 s mono 32 kHz (6 windows)", 1 / s, "recordings/s"))
    result["log_mel_windows_60s_per_s"] = 1 / s
    if "--no-load" not in argv:
        result.update(_bench_loading(rows))
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:10.2f} {unit}")
    return result


if __name__ == "__main__":
    print(main(sys.argv[1:]))
