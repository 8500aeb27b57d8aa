"""``python -m sat2sound_core.accel.native [--force] [--strict]``: build and load the native kernels for
this machine now. Without them the model still runs (PyTorch's ops), so a failure exits 0 unless
``--strict`` is given, which exits 1 unless the kernels are ready to use (``make install`` relies on it)."""

from __future__ import annotations

import sys

from sat2sound_core.accel.native import NativeBuildError, available, build, status
from sat2sound_core.accel.options import options


def main(argv: list[str]) -> int:
    failed = 1 if "--strict" in argv else 0
    if not options().native_kernels:
        print("native kernels switched off (SAT2SOUND_NATIVE_KERNELS=0); nothing to build")
        return failed
    try:
        path = build(force="--force" in argv)
    except NativeBuildError as exc:
        print(f"native kernels not built: {exc}", file=sys.stderr)
        return failed
    if not available():  # built, but the library does not load
        print(f"native kernels not usable: {status()}", file=sys.stderr)
        return failed
    print(f"native kernels ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
