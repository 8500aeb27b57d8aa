"""Choosing the torch device and the numeric precision: one rule for the whole library.

``device="auto"`` means CUDA when it is available, else the CPU. ``precision="auto"`` has one meaning
everywhere: **bf16 where this machine runs bf16 matrix math at least the component's threshold faster
than fp32, fp32 everywhere else.** The speed is :func:`bf16_speedup`, the bf16/fp32 GEMM throughput
ratio: on a CPU measured once (a short timed matmul pair, well under a second) and cached on disk in
``HOME/hardware/bf16_speedup.json``, keyed by the CPU model and flags, the torch version and the thread
count (so a new CPU, torch or thread count measures again); on a CUDA device with bf16 support the H100
per-clip figure :data:`CUDA_BF16_SPEEDUP`; ``SAT2SOUND_BF16_SPEEDUP`` states a known ratio instead.

Each component's threshold follows what bf16 costs it in accuracy (``docs/synthesis.md``,
``docs/weights.md``):

* the Sat2Sound towers (cosine 0.99997 to fp32, the same ranking): :data:`TOWERS_MIN_BF16_SPEEDUP`
  = 1.5×, i.e. bf16 unless bf16 is not really faster. An end-to-end tower pass gains about half to
  two-thirds of the GEMM ratio (5.75× GEMM → 2.9–3.9× per image), so below 1.5× GEMM the gain is gone.
  This keeps yesterday's choice on every AVX512-BF16/AMX CPU measured (≈2× and 5.75×);
* TangoFlux synthesis (bf16 moves the waveform by 1.7e-2 relative: a different sample of the same
  model): :data:`SYNTHESIS_MIN_BF16_SPEEDUP` = 3×, i.e. bf16 only where it turns a wait of minutes
  into one (AMX CPUs, CUDA), fp32 on a CPU where bf16 is only ~2×.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sat2sound_core.common.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
_ALIASES: dict[str, Precision] = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16"}
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

TOWERS_MIN_BF16_SPEEDUP = 1.5
SYNTHESIS_MIN_BF16_SPEEDUP = 3.0
CUDA_BF16_SPEEDUP = 3.8  # TangoFlux per clip, bf16 vs fp32, measured on an H100 (docs/synthesis.md)
SPEEDUP_FILE = "hardware/bf16_speedup.json"
_GEMM_SIZE = 512
_PROCESS_SPEEDS: dict[str, Bf16Speed] = {}  # hardware_key → this process's reading (filled by bf16_speedup)
_GEMM_BUDGET_S = 0.3  # both precisions together, after one warm-up product each


def _flags_of(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_flags_in(cpuinfo: str) -> bool:
    """True when a /proc/cpuinfo text lists AMX-BF16 or AVX512-BF16 among its CPU flags."""
    flags = _flags_of(cpuinfo)
    return any(f in flags for f in _BF16_CPU_FLAGS)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU has AMX-BF16 or AVX512-BF16 bf16 matrix instructions (informational: the
    ``auto`` rule goes by the measured :func:`bf16_speedup`, since AVX512-BF16 alone can be only ~2×)."""
    return bf16_flags_in(_cpuinfo())


@dataclass(frozen=True)
class Bf16Speed:
    """One CPU measurement of bf16 against fp32 GEMM throughput, as cached on disk."""

    key: str
    ratio: float
    fp32_gflops: float
    bf16_gflops: float
    amx_bf16: bool
    avx512_bf16: bool
    steady: bool = True  # False: the timings scattered (a busy machine); such a result is not cached


def hardware_key(cpuinfo: str | None = None, threads: int | None = None) -> str:
    """What a cached measurement is valid for: CPU model and flags, torch version, thread count."""
    import torch

    text = _cpuinfo() if cpuinfo is None else cpuinfo
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = hashlib.sha256(" ".join(sorted(_flags_of(text))).encode()).hexdigest()[:12]
    n = torch.get_num_threads() if threads is None else threads
    return f"{model}|flags {flags}|torch {torch.__version__}|threads {n}"


def _gemm_gflops(n: int, budget_s: float) -> tuple[float, float, bool]:
    """Best fp32 and bf16 throughput of an n×n matmul, the two timed in turn so that a busy machine
    slows both alike (a warm-up product each first: oneDNN picks and JITs its kernel there), and
    whether the timings were steady (each precision's median within 1.5× of its best)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    pairs = ((a32, b32), (a32.to(torch.bfloat16), b32.to(torch.bfloat16)))
    times: tuple[list[float], list[float]] = ([], [])
    for a, b in pairs:
        torch.mm(a, b)
    spent = 0.0
    while len(times[0]) < 3 or (spent < budget_s and len(times[0]) < 40):
        for i, (a, b) in enumerate(pairs):
            t = time.perf_counter()
            torch.mm(a, b)
            dt = time.perf_counter() - t
            times[i].append(dt)
            spent += dt
    best = [max(min(ts), 1e-9) for ts in times]
    steady = all(sorted(ts)[len(ts) // 2] <= 1.5 * b for ts, b in zip(times, best, strict=True))
    flop = 2.0 * n**3 / 1e9
    return flop / best[0], flop / best[1], steady


def measure_bf16_speedup(key: str | None = None, size: int = _GEMM_SIZE, attempts: int = 3) -> Bf16Speed:
    """Time ``size``² fp32 and bf16 matmuls in turn on this CPU (best of a few; < 0.5 s), again up to
    ``attempts`` times while the timings scatter; the result says whether they finally were steady."""
    flags = _flags_of(_cpuinfo())
    for _ in range(max(1, attempts)):
        fp32, bf16, steady = _gemm_gflops(size, _GEMM_BUDGET_S)
        if steady:
            break
    return Bf16Speed(key=key or hardware_key(), ratio=round(bf16 / fp32, 3), fp32_gflops=round(fp32, 3),
                     bf16_gflops=round(bf16, 3), amx_bf16="amx_bf16" in flags, avx512_bf16="avx512_bf16" in flags,
                     steady=steady)


def _read_cached(path: Path, key: str) -> Bf16Speed | None:
    try:
        data = json.loads(path.read_text())
        speed = Bf16Speed(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring the unreadable bf16 speed cache %s (%s); measuring again", path, exc)
        return None
    if speed.key != key or not isinstance(speed.ratio, (int, float)) or speed.ratio <= 0:
        return None
    return speed


def cpu_bf16_speed(home: Path | None = None, key: str | None = None) -> Bf16Speed:
    """This CPU's :class:`Bf16Speed`: read from ``home/hardware/bf16_speedup.json`` when its key matches
    :func:`hardware_key`, else measured by :func:`measure_bf16_speedup` and written there atomically
    (a measurement whose timings scattered is used but not written, so the next run measures again)."""
    from sat2sound_core.common.files import write_text
    from sat2sound_core.common.settings import get_settings

    path = (get_settings().home if home is None else home) / SPEEDUP_FILE
    key = hardware_key() if key is None else key
    cached = _read_cached(path, key)
    if cached is not None:
        return cached
    speed = measure_bf16_speedup(key)
    log.info("measured bf16/fp32 GEMM throughput on this CPU: %.2fx (%s)", speed.ratio, key)
    if not speed.steady:
        log.warning("the bf16 speed measurement scattered (a busy machine?); using %.2fx now, measuring again "
                    "next run (SAT2SOUND_BF16_SPEEDUP states a known ratio)", speed.ratio)
        return speed
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(asdict(speed), indent=1) + "\n")
    except OSError as exc:
        log.warning("cannot cache the bf16 speed measurement in %s (%s); it is measured again next run", path, exc)
    return speed


def _speedup_setting() -> float | None:
    from sat2sound_core.common.settings import PREFIX, get_settings

    raw = get_settings().bf16_speedup.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{PREFIX}BF16_SPEEDUP={raw!r} is not a positive number; give the measured bf16/fp32 "
                          "GEMM ratio (e.g. 5.75) or unset it to have it measured.")
    return value


def bf16_speedup(device: torch.device) -> float:
    """How many times faster bf16 matrix math runs than fp32 on ``device`` (0.0: no bf16 there).

    ``SAT2SOUND_BF16_SPEEDUP`` when set; a CUDA device with bf16 support: :data:`CUDA_BF16_SPEEDUP`;
    a CPU: :func:`cpu_bf16_speed` (measured once, cached on disk, then kept for the process); anything
    else 0.0.
    """
    import torch

    known = _speedup_setting()
    if known is not None:
        return known
    if device.type == "cuda":
        return CUDA_BF16_SPEEDUP if torch.cuda.is_bf16_supported() else 0.0
    if device.type == "cpu":
        key = hardware_key()
        if key not in _PROCESS_SPEEDS:  # once per process, whatever HOME later runs point to
            _PROCESS_SPEEDS[key] = cpu_bf16_speed(key=key)
        return _PROCESS_SPEEDS[key].ratio
    return 0.0


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None/empty) → CUDA when available, else CPU; otherwise the named device, validated.

    Raises :class:`ConfigError` naming the valid choices for a name torch does not know, and for a CUDA
    device on a machine without CUDA.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device is None or str(device).strip() in ("auto", ""):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device).strip())
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was requested but CUDA is not available; use cpu or auto.")
    return dev


def device_has_fast_bf16(device: torch.device, min_speedup: float = TOWERS_MIN_BF16_SPEEDUP) -> bool:
    """Whether bf16 matrix math on ``device`` is at least ``min_speedup`` times fp32 (:func:`bf16_speedup`)."""
    return bf16_speedup(device) >= min_speedup


def resolve_precision(
    precision: str, device: torch.device, *, min_bf16_speedup: float = TOWERS_MIN_BF16_SPEEDUP
) -> Precision:
    """``"fp32"``/``"float32"``, ``"bf16"``/``"bfloat16"`` or ``"auto"`` → ``"fp32"`` or ``"bf16"``.

    ``auto`` follows the module docstring: bf16 where :func:`bf16_speedup` of ``device`` is at least the
    component's ``min_bf16_speedup`` (the towers: :data:`TOWERS_MIN_BF16_SPEEDUP`; synthesis:
    :data:`SYNTHESIS_MIN_BF16_SPEEDUP`), else fp32; only ``auto`` measures anything. Raises
    :class:`ConfigError` for any other name.
    """
    p = str(precision).strip().lower()
    if p in _ALIASES:
        return _ALIASES[p]
    if p != "auto":
        raise ConfigError(f"unknown precision {precision!r}; use fp32, bf16 or auto.")
    return "bf16" if device_has_fast_bf16(device, min_bf16_speedup) else "fp32"


def torch_dtype(precision: Precision) -> torch.dtype:
    """The torch dtype of a resolved precision name."""
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32
