"""Shared test fixtures: where the reference material lives, temporary product homes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `precision="auto"` measures this CPU's bf16/fp32 speed-up, which swings from 0.9x to 5x on a loaded
# 2-core machine; the suite pins it (the value this project's CPUs measure when quiet, so towers run
# bf16 and synthesis fp32 under auto) so that no test depends on the load. tests/sat2sound_core/common/
# test_devices.py unsets it to test the measurement itself.
os.environ.setdefault("SAT2SOUND_BF16_SPEEDUP", "2.0")


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


def test_device_name() -> str:
    """Where the fidelity tests run the networks: ``SAT2SOUND_TEST_DEVICE`` (default ``cpu``).

    ``cuda`` runs the golden-reference suites on a GPU (``docs/weights.md`` says how); TF32 is turned
    off there so float32 means float32 and the reference tolerances keep their meaning.
    """
    name = os.environ.get("SAT2SOUND_TEST_DEVICE", "cpu").strip() or "cpu"
    if name != "cpu":
        import torch

        if not torch.cuda.is_available():
            pytest.fail(f"SAT2SOUND_TEST_DEVICE={name} but torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return name


@pytest.fixture(scope="session")
def test_device() -> str:
    """The device the fidelity suites run on (see :func:`test_device_name`)."""
    return test_device_name()


def on_cpu(value: object) -> object:
    """``value`` with every tensor in it (also inside dataclasses, dicts, tuples) moved to the CPU."""
    import dataclasses

    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: on_cpu(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(on_cpu(v) for v in value)
    return value


class ResultsOnCpu:
    """Wraps a model on another device: its methods take CPU inputs (the model moves them) and
    return their results on the CPU, so a test compares them with CPU reference tensors unchanged."""

    def __init__(self, wrapped: object) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._wrapped, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: on_cpu(attr(*args, **kwargs))


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
    from sat2sound_core.common.settings import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("SAT2SOUND_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
