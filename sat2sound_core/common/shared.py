"""One object per key for the whole process, built by whoever asks first.

Heavy objects that several parts of the library need are built once and kept here. The FLAN-T5
encoder is the example: Sat2Sound's text path and TangoFlux both use the frozen
``google/flan-t5-large`` encoder (TangoFlux ships a copy inside ``tangoflux.safetensors``), so its
~1.3 GB of weights sit in memory once, under a key that names the weights' identity (e.g.
``"flan-t5-large|cpu|torch.float32"``), not the file they were read from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

T = TypeVar("T")

_lock = threading.Lock()
_instances: dict[str, object] = {}


def shared(key: str, build: Callable[[], T]) -> T:
    """The process-wide object for ``key``, built with ``build()`` the first time it is asked for.

    Thread-safe: concurrent callers with the same key wait for one build and get the same object.
    """
    with _lock:
        if key not in _instances:
            _instances[key] = build()
        return cast(T, _instances[key])


def peek(key: str) -> object | None:
    """The object already built for ``key``, or None (never builds)."""
    with _lock:
        return _instances.get(key)


def forget(key: str | None = None) -> None:
    """Drop one object (or all of them, when ``key`` is None): for tests and for freeing memory."""
    with _lock:
        if key is None:
            _instances.clear()
        else:
            _instances.pop(key, None)
