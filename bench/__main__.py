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


def split_args(argv: list[str], modules: list[str]) -> tuple[list[str], list[str]]:
    """Benchmark names and the arguments passed through to each benchmark's own parser.

    A word that names a benchmark (a part of a module name, as ``model`` for ``bench_model``) selects it;
    every other word belongs to the options, so ``--steps 2`` and ``--steps=2`` both reach the
    benchmark (a value right after a flag is never read as a benchmark name).
    """
    names: list[str] = []
    extra: list[str] = []
    for i, arg in enumerate(argv):
        after_flag = i > 0 and argv[i - 1].startswith("-") and "=" not in argv[i - 1]
        if not arg.startswith("-") and any(arg in m for m in modules) and not (after_flag and names):
            names.append(arg)
        else:
            extra.append(arg)
    return names, extra


def main(argv: list[str]) -> int:
    from sat2sound_core.accel.allocator import allocator_status, tune_allocator

    tune_allocator()  # what the app and the command line run with
    print(allocator_status())
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    names, extra = split_args(argv, modules)
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
