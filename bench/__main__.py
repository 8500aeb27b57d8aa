"""Run every benchmark module in this folder (``bench_*.py``), or those named on the command line.

Each module exposes ``main(argv: list[str]) -> dict`` and prints a human-readable table; results are
also written as JSON under ``bench/results/`` so numbers in closing notes can be traced to a run.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    from sat2sound_core.accel.allocator import allocator_status, tune_allocator

    tune_allocator()  # what the app and the command line run with
    print(allocator_status())
    names = [a for a in argv if not a.startswith("-")]
    extra = [a for a in argv if a.startswith("-")]
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    selected = [m for m in modules if not names or any(n in m for n in names)]
    if not selected:
        print(f"no benchmark matches {names}; available: {', '.join(modules)}")
        return 2
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    for name in selected:
        print(f"\n=== {name} ===", flush=True)
        mod = importlib.import_module(f"bench.{name}")
        result = mod.main(extra)
        result = {"benchmark": name, "machine": platform.node(), "time": time.time(), **(result or {})}
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
