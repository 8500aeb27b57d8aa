"""Local sources: a generated GeoTIFF in a UTM CRS, a folder of files, an MBTiles file, and their errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod, Transformer

import tiles
from tests.tiles.tileserver import coordinate_tile, encode, expected_window
from tiles import Chip, LocalSourceError, NoImageryError
from tiles.geometry import CRS_3857, CRS_4326, bing_window
from tiles.mercator import xy_to_lonlat_array

UTM = "EPSG:32632"  # zone 32N, central meridian 9°E
LAT, LON = 45.0, 9.2


def make_utm_geotiff(path: Path, lat: float, lon: float, pixel: float, size: int, dtype: str = "uint8") -> tuple[float, float]:
    """A 3-band GeoTIFF in UTM 32N centred on (lat, lon) whose pixels encode their own column and row:
    R = col % 256, G = row % 256, B = (col // 256 % 16) * 16 + row // 256 % 16. Returns the origin."""
    x, y = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)
    x0, y0 = x - size / 2 * pixel, y + size / 2 * pixel
    cols = np.arange(size)
    rows = np.arange(size)
    data = np.empty((3, size, size), dtype=np.uint8)
    data[0] = (cols % 256)[None, :]
    data[1] = (rows % 256)[:, None]
    data[2] = ((cols // 256 % 16) * 16)[None, :] + (rows // 256 % 16)[:, None]
    out = data.astype(dtype) * (4 if dtype == "uint16" else 1)
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=3, dtype=dtype, crs=UTM,
        transform=Affine(pixel, 0.0, x0, 0.0, -pixel, y0), tiled=True, compress="deflate",
    ) as dst:
        dst.write(out)
    return x0, y0


def assert_local_placement(chip: Chip, origin: tuple[float, float], pixel: float, step: int = 7) -> None:
    """Sampled chip pixels hold the (interpolated) file column/row of the UTM position they map to."""
    t = chip.transform
    cols = np.arange(0, chip.width, step) + 0.5
    rows = np.arange(0, chip.height, step) + 0.5
    xs, ys = np.meshgrid(t.c + t.a * cols, t.f + t.e * rows)
    if chip.crs == CRS_3857:
        lon, lat = xy_to_lonlat_array(xs, ys)
    else:
        assert chip.crs == CRS_4326
        lon, lat = xs, ys
    ex, ny = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)
    fc = (ex - origin[0]) / pixel - 0.5
    fr = (origin[1] - ny) / pixel - 0.5
    ok = (fc % 256 > 4) & (fc % 256 < 251) & (fr % 256 > 4) & (fr % 256 < 251)
    assert ok.mean() > 0.85
    sample = chip.image[::step, ::step].astype(float)
    assert np.abs(sample[..., 0] - fc % 256)[ok].max() <= 1.0
    assert np.abs(sample[..., 1] - fr % 256)[ok].max() <= 1.0
    blue = (np.floor(fc / 256) % 16) * 16 + np.floor(fr / 256) % 16
    assert (sample[..., 2][ok] == blue[ok]).mean() > 0.999


@pytest.fixture(scope="module")
def utm_fine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[float, float]]:
    path = tmp_path_factory.mktemp("local") / "utm_0p4m.tif"
    return path, make_utm_geotiff(path, LAT, LON, 0.4, 2000)


def test_utm_geotiff_as_bingmap(utm_fine: tuple[Path, tuple[float, float]]) -> None:
    path, origin = utm_fine
    chip = tiles.fetch_chip(LAT, LON, "bingmap", tiles.LocalProvider(path))
    assert chip.image.shape == (1500, 1500, 3) and chip.crs == CRS_3857
    assert chip.transform == tiles.target_grid("bingmap", LAT, LON).transform  # same grid as from tiles
    assert_local_placement(chip, origin, 0.4)
    assert chip.provider == "utm_0p4m.tif" and "local imagery" in chip.attribution
    assert any("reprojected" in n for n in chip.notes)


def test_utm_geotiff_as_googleearth_by_path_string(utm_fine: tuple[Path, tuple[float, float]]) -> None:
    path, origin = utm_fine
    chip = tiles.fetch_chip(LAT, LON, "googleEarth", str(path))
    assert chip.image.shape == (1024, 1024, 3)
    assert_local_placement(chip, origin, 0.4)


def test_utm_geotiff_as_sentinel(tmp_path: Path) -> None:
    path = tmp_path / "utm_8m.tif"
    origin = make_utm_geotiff(path, LAT, LON, 8.0, 1800)
    chip = tiles.fetch_chip(LAT, LON, "sentinel", tiles.LocalProvider(path))
    assert chip.image.shape == (1280, 1280, 3) and chip.crs == CRS_4326
    assert_local_placement(chip, origin, 8.0)


def test_sixteen_bit_imagery_is_stretched(tmp_path: Path) -> None:
    path = tmp_path / "u16.tif"
    make_utm_geotiff(path, LAT, LON, 1.0, 1000, dtype="uint16")
    chip = tiles.fetch_chip(LAT, LON, "bingmap", tiles.LocalProvider(path))
    assert chip.image.dtype == np.uint8 and chip.image.max() > 200
    assert any("stretched to 8 bit" in n for n in chip.notes)


def test_partial_coverage_is_noted(tmp_path: Path) -> None:
    path = tmp_path / "small.tif"
    make_utm_geotiff(path, LAT, LON, 0.4, 800)  # 320 m wide: smaller than the 633 m chip
    chip = tiles.fetch_chip(LAT, LON, "bingmap", tiles.LocalProvider(path))
    note = next(n for n in chip.notes if "covers" in n)
    assert "of the chip; the rest is black" in note
    assert (chip.image[0, 0] == 0).all() and chip.image[750, 750].any()


def test_file_not_covering_the_point_says_how_far(utm_fine: tuple[Path, tuple[float, float]]) -> None:
    path, _ = utm_fine
    with pytest.raises(LocalSourceError, match=r"nearest edge is (\d+\.\d) km away") as info:
        tiles.fetch_chip(LAT + 0.5, LON, "bingmap", tiles.LocalProvider(path))
    km = float(str(info.value).split("nearest edge is ")[1].split(" km")[0])
    north_edge = Geod(ellps="WGS84").inv(LON, LAT, LON, LAT + 0.5)[2] / 1000 - 0.4
    assert km == pytest.approx(north_edge, abs=0.2)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_unreadable_and_unreferenced_files(tmp_path: Path) -> None:
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 definitely not a tiff")
    with pytest.raises(LocalSourceError, match="cannot read .*broken.tif"):
        tiles.fetch_chip(LAT, LON, "bingmap", tiles.LocalProvider(bad))
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8") as dst:
        dst.write(np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(LocalSourceError, match="no coordinate reference system"):
        tiles.fetch_chip(LAT, LON, "bingmap", tiles.LocalProvider(plain))
    with pytest.raises(LocalSourceError, match="does not exist"):
        tiles.LocalProvider(tmp_path / "missing.tif")


def test_folder_picks_the_covering_file(tmp_path: Path) -> None:
    folder = tmp_path / "imagery"
    folder.mkdir()
    make_utm_geotiff(folder / "a_far.tif", LAT + 0.2, LON, 1.0, 500)
    origin = make_utm_geotiff(folder / "b_here.tif", LAT, LON, 0.5, 1500)
    (folder / "notes.txt").write_text("ignored")
    provider = tiles.LocalProvider(folder)
    chip = tiles.fetch_chip(LAT, LON, "bingmap", provider)
    assert any("b_here.tif" in n for n in chip.notes)
    assert_local_placement(chip, origin, 0.5)
    with pytest.raises(LocalSourceError, match="a_far.tif does not cover .* km away"):
        tiles.fetch_chip(LAT + 0.3, LON, "bingmap", provider)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LocalSourceError, match="holds no GeoTIFF"):
        tiles.LocalProvider(empty)


def make_mbtiles(path: Path, lat: float, lon: float, z: int = 18, skip: int = 0) -> None:
    """An MBTiles file (TMS rows) with coordinate tiles covering the bingmap window of (lat, lon)."""
    left, top = bing_window(lat, lon)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        conn.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        conn.executemany("INSERT INTO metadata VALUES (?, ?)",
                         [("name", "test mosaic"), ("format", "png"), ("attribution", "© test mosaic")])
        rows = []
        for x in range(left // 256, (left + 1499) // 256 + 1):
            for y in range(top // 256, (top + 1499) // 256 + 1):
                rows.append((z, x, (1 << z) - 1 - y, encode(coordinate_tile(z, x, y))))
        conn.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows[skip:])


def test_mbtiles_source_is_pixel_exact(tmp_path: Path) -> None:
    path = tmp_path / "mosaic.mbtiles"
    make_mbtiles(path, -33.0, 151.0)
    provider = tiles.LocalProvider(path)
    assert isinstance(provider, tiles.MBTilesProvider) and provider.max_zoom == 18
    chip = tiles.fetch_chip(-33.0, 151.0, "bingmap", provider)
    left, top = bing_window(-33.0, 151.0)
    np.testing.assert_array_equal(chip.image, expected_window(18, left, top, 1500, 1500))
    assert chip.attribution == "© test mosaic" and chip.provider == "test mosaic"
    assert not list(tmp_path.rglob("home/tiles/*.mbtiles"))  # local tiles are never cached again
    same = tiles.fetch_chip(-33.0, 151.0, "bingmap", str(path))
    np.testing.assert_array_equal(same.image, chip.image)


def test_mbtiles_missing_tiles_and_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "holes.mbtiles"
    make_mbtiles(path, 45.0, 7.0, skip=1)
    with pytest.raises(NoImageryError, match="no imagery for 1 of"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", tiles.LocalProvider(path))
    bad = tmp_path / "bad.mbtiles"
    bad.write_bytes(b"not sqlite at all" * 50)
    with pytest.raises(LocalSourceError, match="cannot read .*bad.mbtiles as MBTiles"):
        tiles.LocalProvider(bad)


def test_mbtiles_inside_a_folder_is_read_through_gdal(tmp_path: Path) -> None:
    folder = tmp_path / "mosaics"
    folder.mkdir()
    make_mbtiles(folder / "m.mbtiles", -33.0, 151.0)
    chip = tiles.fetch_chip(-33.0, 151.0, "bingmap", tiles.LocalProvider(folder))
    assert any("m.mbtiles" in n and "reprojected" in n for n in chip.notes)
    left, top = bing_window(-33.0, 151.0)
    # same grid as the file's zoom-18 tiles, so even the warped read is exact
    np.testing.assert_array_equal(chip.image, expected_window(18, left, top, 1500, 1500))
