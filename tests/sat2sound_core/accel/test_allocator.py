"""The allocator setting: glibc keeps freed activation memory instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import resource, sys
    import torch
    from sat2sound_core.accel import allocator

    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.empty(8 << 20).fill_(1.0)  # 32 MiB, allocated, touched and freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults()
    plain = faults()
    tuned = allocator.tune_allocator()
    faults()
    after = faults()
    print(plain, after, tuned, allocator.allocator_status())
""")


def _run(env_extra: dict[str, str]) -> list[str]:
    import os

    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split(maxsplit=3)


def test_tuned_allocator_reuses_freed_blocks() -> None:
    plain, after, tuned, status = _run({})
    assert tuned == "True" and "glibc malloc tuned" in status
    # untuned: every 32 MiB block is a fresh mmap, ~8192 page faults each; tuned: reused heap
    assert int(plain) > 20000 and int(after) < int(plain) // 20, (plain, after)


def test_switch_keeps_the_defaults() -> None:
    plain, after, tuned, status = _run({"SAT2SOUND_TUNE_MALLOC": "0"})
    assert tuned == "False" and status.startswith("default")
    assert int(after) > int(plain) // 2
