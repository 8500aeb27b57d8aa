"""A long call (TangoFlux synthesis) run in a worker thread with progress and cancellation.

Streamlit stops a script run when the user presses another button, so the page cannot simply block
in ``synthesize``. The worker runs the call with a progress callback that records how far it got and
raises :class:`~sat2sound_core.common.progress.Cancelled` once the job's token is cancelled; the page polls
:class:`Job` to draw a progress bar and cancels it when the user presses "Cancel" or leaves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sat2sound_core.common.progress import CancelToken, ProgressCallback

log = logging.getLogger(__name__)


def remaining_text(seconds: float | None) -> str:
    """``" · about 4 min left"`` / ``" · about 20 s left"``, or ``""`` while the pace is unknown."""
    if seconds is None:
        return ""
    if seconds >= 90:
        return f" · about {round(seconds / 60)} min left"
    return f" · about {max(1, round(seconds))} s left"


@dataclass
class Job:
    """State of one background call; read it from the page thread, written by the worker."""

    label: str
    token: CancelToken = field(default_factory=CancelToken)
    done: float = 0.0
    total: float = 1.0
    message: str = ""
    result: Any = None
    error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    _thread: threading.Thread | None = None
    _first: tuple[float, float] | None = None  # (time, done) of the first progress report

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace since the first progress report (loading weights, which comes
        before it, does not count); None until two reports have shown a pace."""
        if self._first is None or self.done <= self._first[1]:
            return None
        pace = (time.monotonic() - self._first[0]) / (self.done - self._first[1])
        return max(0.0, pace * (self.total - self.done))

    @property
    def finished(self) -> bool:
        """True once the worker has returned (with a result, an error or a cancellation)."""
        return self._thread is not None and not self._thread.is_alive()

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] for ``st.progress``."""
        return 0.0 if self.total <= 0 else max(0.0, min(1.0, self.done / self.total))

    def progress(self, done: float, total: float, message: str = "") -> None:
        """The progress callback handed to the long call; raises ``Cancelled`` after :meth:`cancel`."""
        self.done, self.total, self.message = float(done), float(total), message
        if self._first is None:
            self._first = (time.monotonic(), self.done)
        self.token.check()

    def cancel(self) -> None:
        """Ask the worker to stop at its next progress report."""
        self.token.cancel()

    def start(self, fn: Callable[[ProgressCallback], Any]) -> Job:
        """Run ``fn(progress)`` in a daemon thread; its return value lands in :attr:`result`."""

        def _run() -> None:
            try:
                self.result = fn(self.progress)
            except BaseException as exc:
                self.error = exc
                if not self.token.cancelled:
                    log.warning("%s failed: %s", self.label, exc, exc_info=exc)

        self._thread = threading.Thread(target=_run, name=f"job:{self.label}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished (or ``timeout`` seconds); True when finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished
