"""Progress reporting shared by the CLI (tqdm) and the app (st.progress).

Long work takes an optional ``progress`` callback of type :data:`ProgressCallback`, called as
``progress(done, total, message)``. Raising :class:`Cancelled` from the callback (or calling
``token.cancel()``) stops the work cleanly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeAlias

from sat2sound_core.common.errors import Sat2SoundError


class Cancelled(Sat2SoundError):
    """The user cancelled a long-running operation."""


#: The one progress callback type of the library: ``progress(done, total, message)``; every caller
#: passes all three arguments, so any function of three parameters fits.
ProgressCallback: TypeAlias = Callable[[float, float, str], None]


class CancelToken:
    """Thread-safe cancellation flag a UI can set while work runs in another thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def report(progress: ProgressCallback | None, done: float, total: float, message: str = "") -> None:
    """Call ``progress`` if given (a no-op otherwise)."""
    if progress is not None:
        progress(done, total, message)


def tqdm_progress(desc: str = "") -> ProgressCallback:
    """A progress callback drawing a tqdm bar on stderr (for the CLI)."""
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def _cb(done: float, total: float, message: str = "") -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc or message, unit_scale=True, leave=False)
        b = bar["bar"]
        b.total = total
        b.n = done
        if message:
            b.set_postfix_str(message, refresh=False)
        b.refresh()
        if done >= total:
            b.close()

    return _cb
