"""Fixtures for the app tests: synthetic weights, a synthetic gallery, loopback tiles, app environment."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app import fixtures


@pytest.fixture(scope="session")
def app_checkpoint(sat2sound_reference: Path) -> Path:
    """The full-size official-layout checkpoint with deterministic random weights (cached on disk)."""
    return fixtures.synthetic_checkpoint()


@pytest.fixture(scope="session")
def app_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixtures.write_gallery(tmp_path_factory.mktemp("gallery") / "gallery.h5")


@pytest.fixture(scope="session")
def tile_server() -> Iterator[object]:
    from tests.tiles.tileserver import TileServer

    with TileServer() as server:
        yield server


@pytest.fixture(scope="session")
def app_env_values(
    tmp_path_factory: pytest.TempPathFactory, app_checkpoint: Path, app_gallery: Path, tile_server: object,
    tangoflux_reference: Path,
) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("apphome")
    yield fixtures.app_env(home, app_checkpoint, app_gallery, tile_server.url_template)  # type: ignore[attr-defined]
    # the loader's converted-weights cache is as big as the checkpoint: do not leave it in /tmp
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture()
def app_env(app_env_values: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The app's environment applied to this process (AppTest runs the page in-process)."""
    from sat2sound_core.common.settings import get_settings

    for k, v in app_env_values.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    yield app_env_values
    get_settings.cache_clear()
