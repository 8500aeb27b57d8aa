"""The performance switches as one frozen object, built from the settings.

:func:`options` is what every fast path consults; :func:`override` changes it for a ``with`` block
(tests and benchmarks compare the paths). Modules that swap their implementation by device
(:class:`~sat2sound_core.accel.swap.Swappable`) choose again when the options they were chosen for are
no longer the ones in effect, so an override reaches models built before it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sat2sound_core.common.errors import ConfigError
from sat2sound_core.common.settings import Settings, get_settings


@dataclass(frozen=True)
class AccelOptions:
    """Which speed-ups are on. Every field is a ``SAT2SOUND_*`` setting (see the README) except ``cxx``.

    ``fused_linear``: CPU linear layers as one oneDNN GEMM with the bias, GELU or residual add fused in.
    ``packed_weights``: prepacked (oneDNN-blocked) weights for the modules marked by ``prepack``.
    ``native_kernels``: the audio tower's compiled CPU kernels (window attention, LayerNorm).
    ``swin_chunk_rows``: tokens per piece of a Swin block on a CPU.
    ``cuda_graphs``: TangoFlux's transformer step replayed as a CUDA graph on a GPU.
    ``tune_malloc``: glibc allocator thresholds raised at start-up.
    ``cxx``: the C++ compiler for the native kernels (``$CXX``; None tries ``c++``, then ``g++``).
    """

    fused_linear: bool = True
    packed_weights: bool = True
    native_kernels: bool = True
    swin_chunk_rows: int = 4096
    cuda_graphs: bool = True
    tune_malloc: bool = True
    cxx: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AccelOptions:
        """The options that ``settings`` (the environment) ask for."""
        return cls(fused_linear=settings.fused_linear, packed_weights=settings.packed_weights,
                   native_kernels=settings.native_kernels, swin_chunk_rows=settings.swin_chunk_rows,
                   cuda_graphs=settings.cuda_graphs, tune_malloc=settings.tune_malloc, cxx=settings.cxx)


_lock = threading.Lock()
_overrides: list[AccelOptions] = []
_from_settings: tuple[Settings, AccelOptions] | None = None


def options() -> AccelOptions:
    """The options in effect: the innermost :func:`override`, else the process settings'.

    The same object is returned until something changes (an override starts or ends, or the settings
    are read again after ``get_settings.cache_clear()``), so callers may compare it by identity.
    """
    global _from_settings
    if _overrides:
        return _overrides[-1]
    settings = get_settings()
    cached = _from_settings
    if cached is None or cached[0] is not settings:
        cached = _from_settings = (settings, AccelOptions.from_settings(settings))
    return cached[1]


@contextmanager
def override(**changes: bool | int | str | None) -> Iterator[AccelOptions]:
    """Run a ``with`` block under other options, e.g. ``with accel.override(fused_linear=False):``.

    It is process-wide (every thread sees it) and meant for tests and benchmarks. Unknown names raise
    :class:`ConfigError` listing the valid ones.
    """
    valid = [f.name for f in dataclasses.fields(AccelOptions)]
    unknown = sorted(set(changes) - set(valid))
    if unknown:
        raise ConfigError(f"unknown accel option(s) {unknown}; valid: {valid}")
    chosen = dataclasses.replace(options(), **changes)  # type: ignore[arg-type]
    with _lock:
        _overrides.append(chosen)
    try:
        yield chosen
    finally:
        with _lock:
            # remove this block's entry (not necessarily the last one if threads interleave)
            for i in range(len(_overrides) - 1, -1, -1):
                if _overrides[i] is chosen:
                    del _overrides[i]
                    break
