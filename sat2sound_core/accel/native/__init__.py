"""Native CPU kernels of the audio tower, compiled on this machine (float32).

- :func:`window_attention` computes what ``F.scaled_dot_product_attention`` computes for the HTS-AT
  audio tower's 8×8 windows (as close to the float64 result as PyTorch's own float32 attention), in
  one pass per (window, head) with the score matrix held in L1.
- :func:`layer_norm` is ``F.layer_norm`` over the last axis (differences ~1e-6), without the per-call
  overhead that makes PyTorch's CPU LayerNorm slow on the tower's short (96-float) rows.

Both are in ``kernels.cpp`` beside this file.

The source is compiled with the system C++ compiler (``$CXX``, else ``c++``/``g++``) against the
installed torch headers, tuned for this CPU (``-march=native``), into
``SAT2SOUND_HOME/kernels/<key>/``; the key covers the source, the torch version, the flags and the
CPU, so another CPU, torch or source builds afresh. ``python -m sat2sound_core.accel.native`` builds
ahead of time (``make install`` does); otherwise the first audio encoding builds it (a few seconds,
once). Without a compiler, or if the build fails, the model uses PyTorch's attention and logs why once.
``SAT2SOUND_NATIVE_KERNELS=0`` (or ``accel.override(native_kernels=False)``) switches the kernels off.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from sat2sound_core.accel.options import options
from sat2sound_core.common.errors import Sat2SoundError
from sat2sound_core.common.files import atomic_path
from sat2sound_core.common.settings import get_settings

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.cpp")
#: the largest window (tokens) the kernel handles; larger windows use PyTorch's attention
MAX_TOKENS = 64


class NativeBuildError(Sat2SoundError):
    """The native kernels could not be compiled or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class _LoadResult:
    loaded: bool
    reason: str


_lock = threading.Lock()
_result: _LoadResult | None = None  # the outcome of the first load attempt in this process
_OFF = "switched off (SAT2SOUND_NATIVE_KERNELS=0 or accel.override(native_kernels=False))"


def _compiler() -> str | None:
    for name in (options().cxx, "c++", "g++"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def _cpu_signature() -> str:
    """The CPU model and feature flags (what ``-march=native`` compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


def _flags() -> tuple[list[str], list[str]]:
    from torch.utils.cpp_extension import include_paths

    torch_lib = Path(torch.__file__).parent / "lib"
    abi = int(bool(torch._C._GLIBCXX_USE_CXX11_ABI))
    compile_flags = ["-O3", "-march=native", "-std=c++20", "-fPIC", "-fopenmp", "-w",
                     f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *(f"-I{p}" for p in include_paths())]
    link_flags = ["-shared", f"-L{torch_lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib}"]
    return compile_flags, link_flags


def library_path() -> Path:
    """Where the compiled kernels for this source, torch, compiler flags and CPU live."""
    compile_flags, link_flags = _flags()
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), " ".join(compile_flags + link_flags).encode(),
                 _cpu_signature().encode(), (_compiler() or "").encode()):
        digest.update(part)
        digest.update(b"\0")
    return get_settings().home / "kernels" / digest.hexdigest()[:16] / "sat2sound_native.so"


def build(force: bool = False) -> Path:
    """Compile the kernels (unless already built for this machine) and return the library's path.

    Raises :class:`NativeBuildError` naming the problem: no compiler, or the compiler's own message.
    """
    if sys.platform != "linux":
        raise NativeBuildError(f"native kernels are built on Linux only (this is {sys.platform}); "
                               "PyTorch's attention is used instead.")
    target = library_path()
    if target.exists() and not force:
        return target
    compiler = _compiler()
    if compiler is None:
        raise NativeBuildError("no C++ compiler found (set CXX, or install one: apt-get install g++); "
                               "PyTorch's attention is used instead.")
    compile_flags, link_flags = _flags()
    try:
        # written beside the target and renamed onto it: a concurrent build or load never sees half a library
        with atomic_path(target, mode=0o777) as tmp:
            command = [compiler, *compile_flags, str(SOURCE), "-o", str(tmp), *link_flags]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
                raise NativeBuildError("compiling the native kernels failed (PyTorch's attention is used "
                                       "instead):\n" + "\n".join(tail))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeBuildError(f"could not run the C++ compiler {compiler}: {exc}") from exc
    return target


def _load() -> _LoadResult:
    try:
        path = build()
        if not hasattr(torch.ops.sat2sound, "layer_norm"):
            torch.ops.load_library(str(path))
    except (NativeBuildError, OSError, RuntimeError) as exc:
        log.warning("native kernels unavailable: %s", exc)
        return _LoadResult(False, str(exc))
    return _LoadResult(True, f"loaded from {path}")


def _loaded() -> _LoadResult:
    global _result
    if _result is None:
        with _lock:
            if _result is None:
                _result = _load()
    return _result


def available() -> bool:
    """Whether the kernels are switched on and loaded (building them on the first call if needed)."""
    return options().native_kernels and _loaded().loaded


def status() -> str:
    """One line for benchmarks and diagnostics: loaded from where, or why not."""
    return _loaded().reason if options().native_kernels else _OFF


def reset() -> None:
    """Forget the outcome of loading, so the next use builds and loads again (tests that break the
    build on purpose)."""
    global _result
    with _lock:
        _result = None


def window_attention(qkv: torch.Tensor, rel_t: torch.Tensor, mask_t: torch.Tensor, first: int,
                     scale: float) -> torch.Tensor:
    """Fused window attention; see the module docstring and ``kernels.cpp`` for the layout.

    ``qkv`` (R, 3C) float32 contiguous; ``rel_t`` (heads, N, NP) and ``mask_t`` (M, N, NP) from
    :func:`transposed_bias`; window ``w`` of this call uses mask ``(first + w) % M``. Returns (R, C).
    """
    if not available():
        raise NativeBuildError(f"the native kernels are not available: {status()}")
    return cast(torch.Tensor, torch.ops.sat2sound.window_attention(qkv, rel_t, mask_t, first, scale))


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.layer_norm`` over the last axis of a contiguous float32 CPU tensor."""
    if not available():
        raise NativeBuildError(f"the native kernels are not available: {status()}")
    return cast(torch.Tensor, torch.ops.sat2sound.layer_norm(x, weight, bias, eps))


def transposed_bias(bias: torch.Tensor) -> torch.Tensor:
    """(..., N, N) query-by-key bias → (..., N, NP) float32, key-major with the queries padded to a
    multiple of 16 (zeros), the layout the kernel reads."""
    n = bias.shape[-1]
    padded = -(-n // 16) * 16
    out = bias.new_zeros((*bias.shape[:-2], n, padded), dtype=torch.float32)
    out[..., :n] = bias.transpose(-1, -2)
    return out.contiguous()
