"""Process-wide, thread-safe access to the heavy objects (engine, synthesiser).

Streamlit runs each browser session's script in its own thread. The engine and the synthesiser are
built once per process with ``st.cache_resource`` (keyed by checkpoint, precision, device, gallery)
and shared by every session; a lock per object serialises calls into it, so two sessions clicking at
once each get their own, correct result (results themselves live in each session's
``st.session_state``, never in a shared object).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import streamlit as st

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Shared:
    """A heavy object and the lock that serialises calls into it."""

    obj: Any
    lock: threading.RLock = field(default_factory=threading.RLock)

    @contextmanager
    def use(self) -> Iterator[Any]:
        """``with shared.use() as obj:`` — hold the lock while calling into ``obj``."""
        with self.lock:
            yield self.obj

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` while holding this object's lock."""
        with self.lock:
            return fn(*args, **kwargs)


@st.cache_resource(show_spinner="Loading the Sat2Sound model (once per process)…", max_entries=2)
def get_engine(checkpoint: str, precision: str, device: str, gallery: str) -> Shared:
    """The engine for one (checkpoint, precision, device, gallery), built once per process."""
    from sat2sound_core.engine import Engine

    engine = Engine(
        checkpoint=checkpoint, precision=precision, device=device, gallery=gallery or None
    )
    log.info("engine ready: %s %s %s", checkpoint, precision, device)
    return Shared(engine)


@st.cache_resource(show_spinner="Loading TangoFlux (once per process)…", max_entries=1)
def get_synthesizer(source: str, device: str, precision: str, _progress: Callable[..., None] | None = None) -> Shared:
    """The TangoFlux synthesiser for ``source`` (HF repo id or local folder), built once per process.

    ``_progress`` (not part of the cache key) reports the download when the weights are fetched.
    """
    from sat2sound_core.synthesis import load_synthesizer

    synth = load_synthesizer(source, device=device, precision=precision, progress=_progress)
    return Shared(synth)
