"""Rendering: colour maps, map overlays linear in web-mercator, colour bars, PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sat2sound_core.common.errors import InputError
from sat2sound_core.maps.heatmaps import grid_geometry, make_heatmap
from sat2sound_core.maps.render import (
    colorbar_rgba,
    colorbar_stops,
    colormap_lut,
    heatmap_rgba,
    legend_html,
    png_bytes,
    upsample,
)
from tests.fixtures.grid_chips import lonlat_chip, mercator_chip


def _merc_y(lat: np.ndarray) -> np.ndarray:
    return np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))


def test_colormap_is_monotonic_in_lightness() -> None:
    lut = colormap_lut("soundscape").astype(float)
    light = lut @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(light) >= -1.0)
    with pytest.raises(InputError, match="unknown colour map"):
        colormap_lut("jet")


def test_mercator_chip_overlay_is_a_plain_upsample() -> None:
    values = np.random.default_rng(0).normal(size=(14, 14)).astype(np.float32)
    h = make_heatmap(values, grid_geometry(mercator_chip()), "q", "text")
    rgba = h.to_rgba(size=56, smooth=False, opacity=1.0)
    assert rgba.shape == (56, 56, 4) and rgba.dtype == np.uint8
    # nearest upsample: each 4×4 block has the colour of its patch; the hottest patch is the brightest
    r, c = np.unravel_index(np.argmax(values), values.shape)
    lut = colormap_lut("soundscape")
    assert tuple(rgba[4 * r + 1, 4 * c + 1, :3]) == tuple(lut[255])
    assert np.all(rgba[..., 3] == 255)


def test_lonlat_chip_overlay_is_resampled_to_mercator_rows() -> None:
    chip = lonlat_chip(west=10.0, north=60.0, deg=0.01, n=280)  # 2.8° tall: mercator differs noticeably
    values = np.zeros((14, 14), np.float32)
    values[3, :] = 1.0  # one hot row of patches: latitudes 60 - 3*0.2 … 60 - 4*0.2
    h = make_heatmap(values, grid_geometry(chip), "q", "text")
    size = 200
    rgba = h.to_rgba(size=size, smooth=False, opacity=1.0, cmap="gray")
    hot_rows = np.flatnonzero(rgba[:, size // 2, 0] > 128)
    west, south, east, north = h.lonlat_bounds
    y_top, y_bot = _merc_y(np.array(north)), _merc_y(np.array(south))
    centres = y_top + (np.arange(size) + 0.5) / size * (y_bot - y_top)
    lats = np.degrees(2 * np.arctan(np.exp(centres)) - np.pi / 2)
    expected = np.flatnonzero((lats <= 60 - 0.6) & (lats > 60 - 0.8))
    np.testing.assert_array_equal(hot_rows, expected)
    # a linear-in-degrees stretch would put the band elsewhere: the resampling matters here
    naive = np.flatnonzero(rgba.shape[0] * 3 / 14 <= np.arange(size) + 0.5)
    assert hot_rows[0] != naive[0]


def test_smooth_upsample_matches_bilinear_with_half_pixel_centres() -> None:
    v = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    out = upsample(v, 4, 4)
    assert out[0, 0] == pytest.approx(0.0) and out[-1, -1] == pytest.approx(3.0)
    assert out[1, 1] == pytest.approx(0.75 * 0.25 * 1 + 0.25 * 0.75 * 2 + 0.25 * 0.25 * 3 + 0.0)


def test_constant_and_nan_heatmaps_render() -> None:
    geo = grid_geometry(mercator_chip())
    flat = make_heatmap(np.full((14, 14), 2.0), geo, "q", "text").to_rgba(size=14, smooth=False)
    assert len({tuple(p) for p in flat.reshape(-1, 4)}) == 1
    v = np.zeros((14, 14), np.float32)
    v[0, 0] = np.nan
    rgba = make_heatmap(v, geo, "q", "text").to_rgba(size=14, smooth=False)
    assert rgba[0, 0, 3] == 0 and rgba[5, 5, 3] > 0
    with pytest.raises(InputError, match="opacity"):
        make_heatmap(v, geo, "q", "text").to_rgba(size=14, opacity=2)


def test_colorbar_legend_and_png() -> None:
    bar = colorbar_rgba(width=64, height=8)
    assert bar.shape == (8, 64, 4)
    assert tuple(bar[0, 0, :3]) == tuple(colormap_lut()[0]) and tuple(bar[0, -1, :3]) == tuple(colormap_lut()[255])
    stops = colorbar_stops(n=5)
    assert len(stops) == 5 and all(s.startswith("#") and len(s) == 7 for s in stops)
    html = legend_html("birds <b>", 0.1, 2.5)
    assert "birds &lt;b&gt;" in html and "0.1" in html and "2.5" in html
    img = Image.open(io.BytesIO(png_bytes(bar)))
    assert img.size == (64, 8) and img.mode == "RGBA"
    with pytest.raises(InputError):
        png_bytes(np.zeros((4, 4), np.float32))


def test_heatmap_rgba_size_checks() -> None:
    h = make_heatmap(np.zeros((14, 14)), grid_geometry(mercator_chip()), "q", "text")
    assert heatmap_rgba(h, size=(10, 20)).shape == (10, 20, 4)
    with pytest.raises(InputError, match="size"):
        heatmap_rgba(h, size=0)
