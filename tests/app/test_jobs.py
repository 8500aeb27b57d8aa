"""The background job that runs synthesis reports progress and stops when cancelled."""

from __future__ import annotations

import threading

from app.jobs import Job
from sat2sound_core.errors import InputError
from sat2sound_core.progress import Cancelled


def test_job_returns_result_and_progress() -> None:
    def work(progress):  # type: ignore[no-untyped-def]
        for i in range(5):
            progress(i + 1, 5, f"step {i + 1}")
        return "done"

    job = Job("ok").start(work)
    assert job.wait(10)
    assert job.result == "done" and job.error is None
    assert job.fraction == 1.0 and job.message == "step 5"


def test_cancel_stops_the_worker_at_its_next_progress_report() -> None:
    gate = threading.Event()
    steps: list[int] = []

    def work(progress):  # type: ignore[no-untyped-def]
        for i in range(1000):
            gate.wait(5)
            progress(i, 1000)
            steps.append(i)
        return "finished"

    job = Job("cancel me").start(work)
    job.cancel()
    gate.set()
    assert job.wait(10)
    assert isinstance(job.error, Cancelled)
    assert job.result is None and steps == []


def test_errors_are_kept_for_the_page() -> None:
    def work(progress):  # type: ignore[no-untyped-def]
        raise InputError("empty caption; type a caption")

    job = Job("bad").start(work)
    assert job.wait(10)
    assert isinstance(job.error, InputError)
