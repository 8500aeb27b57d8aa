"""The process-wide shared objects: one build per key, also under concurrent callers."""

from __future__ import annotations

import threading
import time

from sat2sound_core.common import shared


def test_one_build_per_key_and_forget() -> None:
    builds: list[str] = []

    def build(name: str) -> object:
        builds.append(name)
        return object()

    try:
        a = shared.shared("test:a", lambda: build("a"))
        assert shared.shared("test:a", lambda: build("again")) is a and builds == ["a"]
        assert shared.peek("test:a") is a and shared.peek("test:b") is None  # peek never builds
        shared.forget("test:a")
        assert shared.peek("test:a") is None
        assert shared.shared("test:a", lambda: build("a")) is not a and builds == ["a", "a"]
    finally:
        shared.forget("test:a")


def test_concurrent_callers_wait_for_one_build() -> None:
    calls: list[int] = []

    def slow() -> list[int]:
        calls.append(1)
        time.sleep(0.05)
        return calls

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(shared.shared("test:slow", slow))) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls == [1] and all(g is got[0] for g in got) and len(got) == 4
    finally:
        shared.forget("test:slow")
