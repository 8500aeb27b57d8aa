"""Fixtures for the tiles tests: a fresh loopback tile server, a fast fetcher and an empty tile home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tiles
from tests.tiles.tileserver import TileServer


@pytest.fixture(autouse=True)
def tiles_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty SAT2SOUND_HOME, default tile settings and an empty memory cache for every test."""
    home = tmp_path / "home"
    monkeypatch.setenv("SAT2SOUND_HOME", str(home))
    for name in ("SAT2SOUND_TILE_CACHE", "SAT2SOUND_ESRI_DISK_CACHE", "SAT2SOUND_USER_AGENT",
                 "SAT2SOUND_GOOGLEEARTH_SOURCE", "SAT2SOUND_OFFLINE", "AZURE_MAPS_KEY"):
        monkeypatch.delenv(name, raising=False)
    tiles.clear_memory_cache()
    yield home
    tiles.clear_memory_cache()


@pytest.fixture()
def server() -> Iterator[TileServer]:
    with TileServer() as srv:
        yield srv


@pytest.fixture()
def fetcher() -> Iterator[tiles.TileFetcher]:
    f = tiles.TileFetcher(retries=3, backoff=0.01, max_backoff=0.05, timeout=(1.0, 0.25), max_workers=8)
    yield f
    f.close()


@pytest.fixture()
def provider(server: TileServer) -> tiles.XYZProvider:
    return tiles.XYZProvider(server.url_template, "loopback test tiles", max_zoom=20, name="loopback")
