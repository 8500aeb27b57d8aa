"""Choosing the torch device and the numeric precision: one rule for the whole library.

``device="auto"`` means CUDA when it is available, else the CPU. ``precision="auto"`` means *the
fastest precision this component's accuracy allows on this device*: bf16 where the hardware runs bf16
matrix math fast (a CUDA device with bf16 support; a CPU with AMX-BF16 or AVX512-BF16) **and** the
component stays within its documented tolerance in bf16, fp32 everywhere else. The Sat2Sound towers do
(cosine 0.99997 to fp32); TangoFlux does not (its waveform moves by far more than its reference
tolerance, ``docs/synthesis.md``), so it passes ``bf16_within_tolerance=False`` and ``auto`` is fp32 there.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sat2sound_core.common.errors import ConfigError

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
_ALIASES: dict[str, Precision] = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16"}
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def bf16_flags_in(cpuinfo: str) -> bool:
    """True when a /proc/cpuinfo text lists AMX-BF16 or AVX512-BF16 among its CPU flags."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(f in flags for f in _BF16_CPU_FLAGS)
    return False


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU has AMX-BF16 or AVX512-BF16 (bf16 matrix math is then fast on CPU)."""
    try:
        return bf16_flags_in(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


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


def device_has_fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix math fast (CUDA with bf16 support, or a bf16-capable CPU)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_fast_bf16()


def resolve_precision(precision: str, device: torch.device, *, bf16_within_tolerance: bool = True) -> Precision:
    """``"fp32"``/``"float32"``, ``"bf16"``/``"bfloat16"`` or ``"auto"`` → ``"fp32"`` or ``"bf16"``.

    ``auto`` follows the module docstring: bf16 only where :func:`device_has_fast_bf16` and the
    component says its bf16 output is ``bf16_within_tolerance``. Raises :class:`ConfigError` otherwise.
    """
    p = str(precision).strip().lower()
    if p in _ALIASES:
        return _ALIASES[p]
    if p != "auto":
        raise ConfigError(f"unknown precision {precision!r}; use fp32, bf16 or auto.")
    return "bf16" if bf16_within_tolerance and device_has_fast_bf16(device) else "fp32"


def torch_dtype(precision: Precision) -> torch.dtype:
    """The torch dtype of a resolved precision name."""
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32
