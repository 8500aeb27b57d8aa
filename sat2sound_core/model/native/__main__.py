"""``python -m sat2sound_core.model.native [--force]``: build the native kernels for this machine now."""

from __future__ import annotations

import sys

from sat2sound_core.model.native import NativeBuildError, build, switch_off


def main(argv: list[str]) -> int:
    if switch_off("SAT2SOUND_NATIVE_KERNELS"):
        print("native kernels switched off (SAT2SOUND_NATIVE_KERNELS=0); nothing to build")
        return 0
    try:
        path = build(force="--force" in argv)
    except NativeBuildError as exc:
        # not fatal: the model runs without them (PyTorch's attention)
        print(f"native kernels not built: {exc}", file=sys.stderr)
        return 0 if "--strict" not in argv else 1
    print(f"native kernels ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
