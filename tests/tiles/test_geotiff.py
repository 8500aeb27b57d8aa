"""Chip.to_geotiff and write_raster round trips (georeferencing, tags, COG layout, atomic writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

import tiles
from tiles import XYZProvider


def test_chip_geotiff_round_trip(provider: XYZProvider, fetcher: tiles.TileFetcher, tmp_path: Path) -> None:
    chip = tiles.fetch_chip(45.0, 7.0, "sentinel", provider, fetcher=fetcher).crop(3)
    path = tmp_path / "out" / "chip.tif"
    chip.to_geotiff(path)
    assert [p.name for p in path.parent.iterdir()] == ["chip.tif"]  # no temp files left behind
    with rasterio.open(path) as src:
        assert src.crs == chip.crs and src.transform.almost_equals(chip.transform)
        np.testing.assert_array_equal(np.moveaxis(src.read(), 0, -1), chip.image)
        assert src.bounds == pytest.approx(chip.bounds)
        tags = src.tags()
        assert tags["attribution"] == "loopback test tiles" and tags["geometry"] == "sentinel"
        assert tags["scale"] == "3" and float(tags["center_lat"]) == 45.0
        assert src.descriptions == ("red", "green", "blue")
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_write_raster_float_bytes_with_nan() -> None:
    data = np.random.default_rng(1).random((2, 40, 30)).astype(np.float32)
    data[0, 0, 0] = np.nan
    transform = tiles.target_grid("bingmap", 10.0, 10.0).transform
    blob = tiles.write_raster(
        None, data, "EPSG:3857", transform, nodata=float("nan"),
        band_descriptions=["birdsong", "traffic"], band_tags=[{"query": "birds"}, {"query": "cars"}],
        tags={"model": "test"},
    )
    assert isinstance(blob, bytes)
    with MemoryFile(blob) as mem, mem.open() as src:
        out = src.read(masked=True)
        assert out.mask[0, 0, 0] and not out.mask[0, 0, 1]
        np.testing.assert_allclose(out.data[:, 1:, 1:], data[:, 1:, 1:])
        assert src.descriptions == ("birdsong", "traffic") and src.tags(2)["query"] == "cars"
        assert src.tags()["model"] == "test" and src.transform.almost_equals(transform)


def test_write_raster_rejects_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bands, rows, cols"):
        tiles.write_raster(tmp_path / "x.tif", np.zeros((1, 2, 3, 4)), "EPSG:4326", tiles.target_grid("sentinel", 0, 0).transform)
    with pytest.raises(tiles.TilesInputError, match="stack the bands along the first axis"):
        tiles.write_raster(None, np.zeros(5), "EPSG:4326", tiles.target_grid("sentinel", 0, 0).transform)
    assert list(tmp_path.iterdir()) == []


def test_write_raster_file_mode_and_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import stat

    transform = tiles.target_grid("sentinel", 0, 0).transform
    old = os.umask(0o022)
    try:
        path = tmp_path / "sub" / "r.tif"
        assert tiles.write_raster(path, np.zeros((2, 8, 8), np.float32), "EPSG:4326", transform) is None
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the umask's mode, not mkstemp's 0600

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        tiles.write_raster(tmp_path / "sub" / "late.tif", np.zeros((1, 8, 8), np.uint8), "EPSG:4326", transform)
    assert [p.name for p in path.parent.iterdir()] == ["r.tif"]  # no file, no temp file


def test_chip_arguments_raise_the_tiles_error(provider: XYZProvider, fetcher: tiles.TileFetcher) -> None:
    chip = tiles.fetch_chip(45.0, 7.0, "sentinel", provider, fetcher=fetcher)
    for bad in (0, 2.5, True):
        with pytest.raises(tiles.TilesInputError, match=r"chip\.crop\(1\)"):
            chip.crop(bad)
        with pytest.raises(tiles.TilesError):
            chip.footprints((bad,))
    with pytest.raises(tiles.TilesInputError, match="n=14"):
        chip.patch_grid(0)
