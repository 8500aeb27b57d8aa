"""The background warm-up: heavy imports once per process, after a delay, never twice at once."""

from __future__ import annotations

import threading

import pytest

from app import resources


@pytest.mark.parametrize(("raw", "delay"), [(None, 3.0), ("0.5", 0.5), ("0", 0.0), ("off", None), ("-1", None),
                                            ("soon", 3.0)])
def test_warmup_delay_setting(monkeypatch: pytest.MonkeyPatch, raw: str | None, delay: float | None) -> None:
    if raw is None:
        monkeypatch.delenv("SAT2SOUND_APP_WARMUP_DELAY", raising=False)
    else:
        monkeypatch.setenv("SAT2SOUND_APP_WARMUP_DELAY", raw)
    assert resources.warmup_delay_s() == delay


def test_warmup_runs_once_per_process_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    done = threading.Event()

    def fake_import() -> None:
        calls.append(threading.current_thread().name)
        done.set()

    monkeypatch.setattr(resources, "_warmup_started", False)
    monkeypatch.setattr(resources, "_imported", False)
    monkeypatch.setattr(resources, "import_heavy_modules", fake_import)
    monkeypatch.setenv("SAT2SOUND_APP_WARMUP_DELAY", "0")
    assert resources.start_warmup() is True
    assert resources.start_warmup() is False  # a second page run does not start another
    assert done.wait(10)
    assert calls == ["sat2sound-warmup"]


def test_warmup_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "_warmup_started", False)
    monkeypatch.setattr(resources, "_imported", False)
    monkeypatch.setenv("SAT2SOUND_APP_WARMUP_DELAY", "off")
    assert resources.start_warmup() is False


def test_heavy_imports_happen_once_and_a_failure_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    imported: list[str] = []
    real = resources.importlib.import_module

    def spy(name: str) -> object:
        imported.append(name)
        return real(name)

    monkeypatch.setattr(resources, "_imported", False)
    monkeypatch.setattr(resources, "HEAVY_MODULES", ("json", "no_such_module_for_sat2sound"))
    monkeypatch.setattr(resources.importlib, "import_module", spy)
    threads = [threading.Thread(target=resources.import_heavy_modules) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert imported == ["json", "no_such_module_for_sat2sound"]  # four callers, one import pass
    assert "no_such_module_for_sat2sound" in caplog.text
    resources.import_heavy_modules()
    assert len(imported) == 2
