"""One FLAN-T5 encoder per process, shared by Sat2Sound's text path and TangoFlux.

Both use the frozen ``google/flan-t5-large`` encoder (TangoFlux ships a copy inside
``tangoflux.safetensors``). Whoever needs it first builds it through :func:`shared_encoder`; later
callers with the same key get the same instance, so the ~1.3 GB of weights sit in memory once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_instances: dict[str, object] = {}


def shared_encoder(key: str, build: Callable[[], T]) -> T:
    """Return the process-wide object for ``key``, building it with ``build()`` the first time.

    ``key`` names the weights' identity, not where they came from (e.g. ``"flan-t5-large@cpu/fp32"``
    whether read from google/flan-t5-large or from TangoFlux). Thread-safe: concurrent callers wait
    for one build.
    """
    with _lock:
        if key not in _instances:
            _instances[key] = build()
        return _instances[key]  # type: ignore[return-value]


def peek(key: str) -> object | None:
    """The already-built instance for ``key``, or None (never builds)."""
    with _lock:
        return _instances.get(key)


def forget(key: str | None = None) -> None:
    """Drop one cached instance (or all): for tests and for freeing memory."""
    with _lock:
        if key is None:
            _instances.clear()
        else:
            _instances.pop(key, None)
