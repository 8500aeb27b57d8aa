"""Geometry without any tiles: coordinates, training grids, centre crops, patch grid, footprints."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod

from tiles import Chip, CoordinateError, ProviderError, center_crop_offset, target_grid
from tiles.geometry import CRS_3857, CRS_4326, bing_window, geometry_spec, sentinel_bounds, source_zoom
from tiles.mercator import (
    global_pixel,
    ground_resolution,
    lonlat_to_xy,
    quadkey,
    validate_point,
    xy_to_lonlat,
)

GEOD = Geod(ellps="WGS84")


@pytest.mark.parametrize(
    ("lat", "lon", "match"),
    [
        ("abc", 0, "latitude must be a number"),
        (0, None, "longitude must be a number"),
        (True, 0, "latitude must be a number"),
        (float("nan"), 0, "finite"),
        (95, 0, "out of range"),
        (85.06, 0, "85.0511"),
        (-86, 0, "85.0511"),
        (0, 181, "wrap it first"),
    ],
)
def test_bad_coordinates(lat: object, lon: object, match: str) -> None:
    with pytest.raises(CoordinateError, match=match):
        validate_point(lat, lon)


def test_coordinates_accept_numbers_and_numeric_strings() -> None:
    assert validate_point("45.5", np.float32(7.25)) == (45.5, 7.25)
    assert validate_point(85.0511, -180) == (85.0511, -180.0)


def test_mercator_round_trip_and_quadkey() -> None:
    for lon, lat in [(0, 0), (13.4, 52.5), (-179.9, -60), (179.99, 85.05)]:
        x, y = lonlat_to_xy(lon, lat)
        back = xy_to_lonlat(x, y)
        assert back == pytest.approx((lon, lat), abs=1e-9)
    # Berlin at z18 (reference value from the imagery notes)
    px, py = global_pixel(13.4050, 52.5200, 18)
    assert quadkey(int(px // 256), int(py // 256), 18).startswith("1202102332")
    assert quadkey(3, 5, 3) == "213"


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0, -33.0])
def test_bing_grid_is_native_zoom18(lat: float) -> None:
    grid = target_grid("bingmap", lat, 10.0)
    assert grid.crs == CRS_3857 and (grid.width, grid.height) == (1500, 1500)
    assert grid.transform.a == pytest.approx(2 * math.pi * 6378137 / 2**26)  # z18 mercator m/px
    assert grid.ground_resolution == pytest.approx(0.5972 * math.cos(math.radians(lat)), rel=1e-3)
    x, y = lonlat_to_xy(10.0, lat)
    c, r = (int(v) for v in ~grid.transform @ (x, y))
    assert (r, c) in {(749, 749), (749, 750), (750, 749), (750, 750)}
    left, top = bing_window(lat, 10.0)
    assert grid.transform.c == pytest.approx(left * grid.transform.a - 20037508.342789244)


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0, -33.0, 80.0])
def test_sentinel_grid_is_10m_at_any_latitude(lat: float) -> None:
    grid = target_grid("sentinel", lat, 20.0)
    assert grid.crs == CRS_4326 and (grid.width, grid.height) == (1280, 1280)
    w, s, e, n = grid.bounds
    _, _, east_west = GEOD.inv(w, lat, e, lat)
    _, _, north_south = GEOD.inv(20.0, s, 20.0, n)
    # geodesic E-W chord across the bbox: 12.8 km within 0.1 % (the offsets are geodesic from the point)
    assert east_west / 1280 == pytest.approx(10.0, rel=2e-3)
    assert north_south / 1280 == pytest.approx(10.0, rel=1e-4)


def test_sentinel_bounds_cross_antimeridian_continuously() -> None:
    w, s, e, n = sentinel_bounds(0.0, 179.99)
    assert w < 179.99 < e and e > 180
    w, s, e, n = sentinel_bounds(0.0, -179.99)
    assert w < -180 < e


def test_source_zoom_for_10m() -> None:
    assert source_zoom(10.0, 0.0, 14) == 14
    assert source_zoom(10.0, 60.0, 14) == 13
    assert source_zoom(10.0, 0.0, 13) == 13  # capped at the provider's max zoom
    for lat in (0, 30, 45, 52.5, 60, 80):
        z = source_zoom(10.0, lat, 20)
        assert ground_resolution(z, lat) <= 10.0 < ground_resolution(z - 1, lat)


def test_googleearth_grid() -> None:
    grid = target_grid("googleEarth", 45.0, 7.0)
    assert (grid.width, grid.height) == (1024, 1024) and grid.crs == CRS_3857
    assert grid.transform.a * math.cos(math.radians(45.0)) == pytest.approx(0.2)


def test_unknown_geometry_lists_valid_ones() -> None:
    with pytest.raises(ProviderError, match="bingmap, sentinel, googleEarth"):
        geometry_spec("landsat")
    assert geometry_spec("GOOGLEEARTH").name == "googleEarth"


def _torchvision_like_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Independent re-statement of torchvision.transforms.functional.center_crop for HWC arrays."""
    h, w = img.shape[:2]
    if size > w or size > h:
        pl = (size - w) // 2 if size > w else 0
        pt = (size - h) // 2 if size > h else 0
        pr = (size - w + 1) // 2 if size > w else 0
        pb = (size - h + 1) // 2 if size > h else 0
        img = np.pad(img, ((pt, pb), (pl, pr), (0, 0)))
        h, w = img.shape[:2]
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img[top : top + size, left : left + size]


def _chip(geometry: str, size: int, crs=CRS_3857) -> Chip:
    rng = np.random.default_rng(0)
    grid = target_grid(geometry, 45.0, 7.0)
    return Chip(
        image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        crs=grid.crs,
        transform=grid.transform,
        ground_resolution=grid.ground_resolution,
        provider="test",
        attribution="test",
        geometry=geometry,
        center=(45.0, 7.0),
    )


@pytest.mark.parametrize(("geometry", "size"), [("bingmap", 1500), ("sentinel", 1280), ("googleEarth", 1024)])
@pytest.mark.parametrize("scale", [1, 3, 5])
def test_crop_matches_the_model_transform(geometry: str, size: int, scale: int) -> None:
    chip = _chip(geometry, size)
    tile = geometry_spec(geometry).crop_tile
    crop = chip.crop(scale)
    c = scale * tile
    expected = _torchvision_like_center_crop(chip.image, c)
    assert crop.image.shape == (c, c, 3) and crop.scale == scale
    np.testing.assert_array_equal(crop.image, expected)
    # the crop's transform maps its pixel (0, 0) onto the chip pixel it came from
    off = center_crop_offset(size, c)
    assert crop.transform @ (0, 0) == pytest.approx(chip.transform @ (off, off))
    assert crop.ground_resolution == chip.ground_resolution


def test_crop_offsets_and_padding() -> None:
    assert center_crop_offset(1500, 300) == 600
    assert center_crop_offset(1280, 768) == 256
    assert center_crop_offset(1001, 300) == 350  # round(350.5) = 350 (Python rounds half to even)
    assert center_crop_offset(1003, 300) == 352  # round(351.5) = 352
    chip = _chip("googleEarth", 1024)
    big = chip.crop(5)  # 1280 > 1024: zero-padded like torchvision
    assert big.image.shape == (1280, 1280, 3)
    np.testing.assert_array_equal(big.image, _torchvision_like_center_crop(chip.image, 1280))
    assert (big.image[:128] == 0).all() and (big.image[:, -128:] == 0).all()
    with pytest.raises(ValueError, match="positive integer"):
        chip.crop(0)


def test_patch_grid_order_and_tiling() -> None:
    chip = _chip("bingmap", 1500).crop(3)
    cells = chip.patch_grid()
    assert len(cells) == 196
    w, s, e, n = chip.lonlat_bounds
    first, last = cells[0].bounds, cells[-1].bounds
    assert first[0] == pytest.approx(w) and first[3] == pytest.approx(n)  # top-left first
    assert last[2] == pytest.approx(e) and last[1] == pytest.approx(s)  # bottom-right last
    assert cells[1].bounds[0] == pytest.approx(first[2])  # index 1 is to the east (same row)
    assert cells[14].bounds[3] == pytest.approx(first[1])  # index 14 is below
    total = sum(c.area for c in cells)
    assert total == pytest.approx((e - w) * (n - s), rel=1e-9)
    # a token's cell contains the lon/lat of the matching 16-px patch centre of the 224-px model input
    for idx in (0, 15, 100, 195):
        row, col = divmod(idx, 14)
        lon, lat = chip.lonlat_of_pixel((row + 0.5) * 900 / 14, (col + 0.5) * 900 / 14)
        from shapely.geometry import Point

        assert cells[idx].contains(Point(lon, lat))


def test_footprints_nest_and_scale() -> None:
    chip = _chip("sentinel", 1280)
    fp = chip.footprints()
    assert set(fp) == {1, 3, 5}
    assert fp[5].contains(fp[3]) and fp[3].contains(fp[1])
    assert fp[5].equals(chip.footprint())  # 5×256 = 1280: the whole chip
    w1 = fp[1].bounds[2] - fp[1].bounds[0]
    w3 = fp[3].bounds[2] - fp[3].bounds[0]
    assert w3 / w1 == pytest.approx(3.0)
    assert fp[1].centroid.x == pytest.approx(7.0, abs=1e-3) and fp[1].centroid.y == pytest.approx(45.0, abs=1e-3)


@pytest.mark.parametrize("size", [1500, 1001, 1003, 1280, 1024, 700])
@pytest.mark.parametrize("scale", [1, 3, 5])
def test_crop_agrees_with_the_model_preprocessing(size: int, scale: int) -> None:
    from sat2sound_core.preprocess.image import center_crop

    chip = _chip("bingmap", size)
    np.testing.assert_array_equal(chip.crop(scale).image, center_crop(chip.image, scale * 300))
