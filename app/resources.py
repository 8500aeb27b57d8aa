"""Process-wide, thread-safe access to the heavy objects (engine, synthesiser).

Streamlit runs each browser session's script in its own thread. The engine and the synthesiser are
built once per process with ``st.cache_resource`` (keyed by checkpoint, precision, device, gallery)
and shared by every session. Both are thread-safe themselves (their own locks guard their caches and
lazy loading); the lock of :class:`Shared` only serialises the *model calls* (encoding a chip, a
heatmap, the concept map, a synthesis), so two sessions do not run the network's forward passes on the
same CPU cores or GPU at once. Nothing that waits on the network (imagery fetches, gallery or weights
downloads) and nothing cheap (retrieval, gallery audio) is done under it: one session fetching from a
slow tile server never delays another session's click. Results live in each session's
``st.session_state``, never in a shared object.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar

import streamlit as st

if TYPE_CHECKING:
    from sat2sound_core.engine import Engine
    from sat2sound_core.synthesis import Synthesizer

from sat2sound_core.common.progress import ProgressCallback

log = logging.getLogger(__name__)
T = TypeVar("T")
Obj = TypeVar("Obj")
P = ParamSpec("P")

# What the first analysis needs besides the checkpoint itself: torch and the model (engine), the text
# encoder's loader, the gallery reader (h5py), overlays and exports.
HEAVY_MODULES = (
    "sat2sound_core.engine",
    "sat2sound_core.weights.loading",
    "sat2sound_core.weights.t5",
    "sat2sound_core.gallery",
    "sat2sound_core.maps.render",
    "sat2sound_core.export",
)
_import_lock = threading.Lock()
_imported = False
_warmup_started = False
_warmup_guard = threading.Lock()


def import_heavy_modules() -> None:
    """Import :data:`HEAVY_MODULES` once per process, one thread at a time.

    The page is drawn without them (the map must not wait for torch); the first analysis, the
    weights panel and the background warm-up call this first, so torch is never imported by two
    threads at once. A module that fails to import is logged and left to fail where it is used.
    """
    global _imported
    if _imported:
        return
    with _import_lock:
        if _imported:
            return
        for name in HEAVY_MODULES:
            try:
                importlib.import_module(name)
            except Exception:
                log.warning("importing %s failed", name, exc_info=True)
        _imported = True


def warmup_delay_s() -> float | None:
    """Seconds after the first page run before the heavy imports start (:func:`app.config.warmup_delay`)."""
    from app.config import warmup_delay

    return warmup_delay()


def start_warmup() -> bool:
    """Once per process, import the heavy modules in a daemon thread after :func:`warmup_delay_s`.

    Called at the end of a page run, so the map has been sent to the browser; the delay leaves the
    browser time to load the map's iframe and tiles (served by this process) before the imports take
    the CPU. The first click then finds torch loaded. Returns whether a thread was started.
    """
    global _warmup_started
    delay = warmup_delay_s()
    with _warmup_guard:
        if _warmup_started or _imported or delay is None:
            return False
        _warmup_started = True
    timer = threading.Timer(delay, import_heavy_modules)
    timer.name = "sat2sound-warmup"
    timer.daemon = True
    timer.start()
    return True


@dataclass
class Shared(Generic[Obj]):
    """A heavy, thread-safe object and the lock that serialises its *model calls* (never network I/O).

    Use :meth:`use` only around forward passes; call everything else on :attr:`obj` directly.
    """

    obj: Obj
    lock: threading.RLock = field(default_factory=threading.RLock)

    @contextmanager
    def use(self) -> Iterator[Obj]:
        """``with shared.use() as obj:`` — hold the lock while running the model through ``obj``."""
        with self.lock:
            yield self.obj

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` while holding this object's lock."""
        with self.lock:
            return fn(*args, **kwargs)


@st.cache_resource(show_spinner="Loading the Sat2Sound model (once per process)…", max_entries=2)
def get_engine(checkpoint: str, precision: str, device: str, gallery: str) -> Shared[Engine]:
    """The engine for one (checkpoint, precision, device, gallery), built once per process."""
    import_heavy_modules()
    from sat2sound_core.engine import Engine

    engine = Engine(
        checkpoint=checkpoint, precision=precision, device=device, gallery=gallery or None
    )
    log.info("engine ready: %s %s %s", checkpoint, precision, device)
    return Shared(engine)


@st.cache_resource(show_spinner="Loading TangoFlux (once per process)…", max_entries=1)
def get_synthesizer(
    source: str, device: str, precision: str, _progress: ProgressCallback | None = None
) -> Shared[Synthesizer]:
    """The TangoFlux synthesiser for ``source`` (HF repo id or local folder), built once per process.

    ``_progress`` (not part of the cache key) reports the download when the weights are fetched.
    """
    from sat2sound_core.synthesis import load_synthesizer

    synth = load_synthesizer(source, device=device, precision=precision, progress=_progress)
    return Shared(synth)
