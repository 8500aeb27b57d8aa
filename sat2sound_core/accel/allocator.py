"""Process allocator settings for CPU inference.

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold (128 KiB to
32 MiB, adapting) straight from the kernel and returns them on ``free``, and trims the heap top when
128 KiB are free there; the HTS-AT tower's multi-megabyte activations then cost fresh page faults,
and the zeroing of those pages, on every call: about 20,000 faults and 30–70 ms of system time per
batch of 16 clips on the benchmark machine. :func:`tune_allocator` raises both thresholds so freed
blocks are reused: the batch then takes ~600 faults (``bench model`` reports the effect). The price is
that the process keeps up to its peak heap instead of handing it back between calls.

The command line, the app and the benchmarks call it at start-up; a library user calls it once, or
not at all. ``SAT2SOUND_TUNE_MALLOC=0`` switches it off. Only glibc has these knobs; elsewhere it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

from sat2sound_core.accel.options import options

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: blocks up to this size come from the reusable heap instead of fresh mmaps
MMAP_THRESHOLD = 256 << 20
#: free memory kept at the heap top before it is returned to the system
TRIM_THRESHOLD = 1 << 30
#: extra heap requested per growth, so growing does not happen a page at a time
TOP_PAD = 64 << 20

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once). Returns whether they are set."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not options().tune_malloc or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
    if not ok:
        log.info("glibc refused the allocator settings; keeping its defaults")
    _tuned = ok
    return ok


def allocator_status() -> str:
    """One line for benchmarks: whether :func:`tune_allocator` is in effect."""
    if _tuned:
        return (f"glibc malloc tuned (mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold "
                f"{TRIM_THRESHOLD >> 20} MiB)")
    return "default allocator settings"
