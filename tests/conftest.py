"""Shared test fixtures: where the reference material lives, temporary product homes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _reference_root() -> Path:
    env = os.environ.get("SAT2SOUND_REFERENCE")
    return Path(env) if env else REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``. In CI (``CI`` set) a missing folder fails the run instead of skipping."""
    root = _reference_root()
    if not root.is_dir():
        message = f"reference material not found at {root} (set SAT2SOUND_REFERENCE to its location)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def sat2sound_reference(reference_dir: Path) -> Path:
    """``reference/sat2sound`` (MODEL.md, manifests, make_weights.py, goldens)."""
    path = reference_dir / "sat2sound"
    assert path.is_dir(), f"missing {path}"
    return path


@pytest.fixture(scope="session")
def tangoflux_reference(reference_dir: Path) -> Path:
    """``reference/tangoflux`` (SYNTHESIS.md, manifest, tiny weights, golden_tiny.pt)."""
    path = reference_dir / "tangoflux"
    assert path.is_dir(), f"missing {path}"
    return path


def reference_file(folder: Path, name: str) -> Path:
    """A file inside a reference folder; fails (never skips) when it is missing."""
    path = folder / name
    assert path.is_file(), f"reference file {path} is missing"
    return path


@pytest.fixture()
def product_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty SAT2SOUND_HOME for one test, offline, with settings re-read."""
    from sat2sound_core.settings import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("SAT2SOUND_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
