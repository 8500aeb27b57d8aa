"""The background job that runs synthesis reports progress and stops when cancelled."""

from __future__ import annotations

import threading

from app.jobs import Job
from sat2sound_core.common.errors import InputError
from sat2sound_core.common.progress import Cancelled


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


def test_time_left_follows_the_pace_since_the_first_report(monkeypatch) -> None:
    """Loading (before the first report) does not count; then seconds per step × steps left."""
    import app.jobs as jobs

    now = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: now[0])
    job = Job("eta")
    now[0] = 160.0  # a minute of loading weights
    job.progress(1, 51, "step 1/50")
    assert job.eta_seconds is None  # one report: no pace yet
    now[0] = 172.0
    job.progress(3, 51, "step 3/50")  # 6 s per step since the first report
    assert job.eta_seconds == 6.0 * 48
    assert jobs.remaining_text(job.eta_seconds) == " · about 5 min left"
    assert jobs.remaining_text(42.4) == " · about 42 s left"
    assert jobs.remaining_text(0.2) == " · about 1 s left"
    assert jobs.remaining_text(None) == ""
