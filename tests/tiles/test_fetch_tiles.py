"""fetch_chip against the loopback tile server: placement, geometries, antimeridian, caches, faults."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import tiles
from tests.tiles.tileserver import TileServer, expected_window
from tiles import Chip, NoImageryError, ProviderError, TileFetcher, TileFetchError, XYZProvider
from tiles.geometry import CRS_3857, CRS_4326, bing_window
from tiles.mercator import EARTH_RADIUS, ORIGIN, lonlat_to_xy, mercator_resolution

LATS = [0.0, 45.0, 60.0, -33.0]
ANTIMERIDIAN = [(0.001, 179.9995), (10.0, -179.9995)]


def _source_positions(chip: Chip, z: int) -> tuple[np.ndarray, np.ndarray]:
    """Global pixel positions (continuous, pixel-centre convention) at zoom z of every chip column/row
    centre, computed independently from the chip's transform."""
    t = chip.transform
    xs = t.c + t.a * (np.arange(chip.width) + 0.5)
    ys = t.f + t.e * (np.arange(chip.height) + 0.5)
    if chip.crs == CRS_4326:
        xs = EARTH_RADIUS * np.radians(xs)
        ys = EARTH_RADIUS * np.log(np.tan(np.pi / 4 + np.radians(ys) / 2))
    else:
        assert chip.crs == CRS_3857
    res = mercator_resolution(z)
    return (xs + ORIGIN) / res - 0.5, (ORIGIN - ys) / res - 0.5


def assert_warped_placement(chip: Chip, z: int, tol: float = 1.0) -> None:
    """Every pixel away from tile seams holds the (interpolated) coordinates of the source position it
    maps to: within ``tol`` source pixels, and its tile index (blue) exactly."""
    px, py = _source_positions(chip, z)
    fx, fy = px % 256, py % 256
    okx = (fx > 3) & (fx < 252)
    oky = (fy > 3) & (fy < 252)
    assert okx.mean() > 0.9 and oky.mean() > 0.9
    img = chip.image.astype(float)
    err_r = np.abs(img[..., 0] - fx[None, :])[np.ix_(oky, okx)]
    err_g = np.abs(img[..., 1] - fy[:, None])[np.ix_(oky, okx)]
    assert err_r.max() <= tol and err_g.max() <= tol, (err_r.max(), err_g.max())
    tx = np.floor(px / 256).astype(int) % (1 << z)
    ty = np.floor(py / 256).astype(int)
    blue = (tx[None, okx] % 16) * 16 + ty[oky, None] % 16
    np.testing.assert_array_equal(chip.image[..., 2][np.ix_(oky, okx)], blue)


def _zoom_from_notes(chip: Chip) -> int:
    note = next(n for n in chip.notes if n.startswith("warped"))
    return int(note.split("zoom ")[1].split()[0])


@pytest.mark.parametrize(("lat", "lon"), [(lat, 7.0) for lat in LATS] + ANTIMERIDIAN)
def test_bingmap_is_pixel_exact(provider: XYZProvider, server: TileServer, fetcher: TileFetcher, lat: float, lon: float) -> None:
    chip = tiles.fetch_chip(lat, lon, "bingmap", provider, fetcher=fetcher)
    left, top = bing_window(lat, lon)
    np.testing.assert_array_equal(chip.image, expected_window(18, left, top, 1500, 1500))
    assert chip.image.dtype == np.uint8 and chip.image.shape == (1500, 1500, 3)
    assert chip.crs == CRS_3857 and chip.geometry == "bingmap" and chip.center == (lat, lon)
    assert chip.ground_resolution == pytest.approx(0.59716 * math.cos(math.radians(lat)), rel=1e-4)
    # the transform puts the point in the centre pixel, and pixel (0, 0) at global pixel (left, top)
    x, y = lonlat_to_xy(lon, lat)
    col, row = ~chip.transform @ (x, y)
    assert abs(col - 750) <= 0.5 and abs(row - 750) <= 0.5
    res = mercator_resolution(18)
    assert chip.transform.c == pytest.approx(left * res - ORIGIN) and chip.transform.f == pytest.approx(ORIGIN - top * res)
    w, s, e, n = chip.lonlat_bounds
    assert w < lon < e and s < lat < n
    tiles_x = (left + 1499) // 256 - left // 256 + 1
    tiles_y = (top + 1499) // 256 - top // 256 + 1
    assert server.request_count == tiles_x * tiles_y
    assert chip.provider == "loopback" and chip.attribution == "loopback test tiles"


def test_antimeridian_wraps_tile_columns(provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    chip = tiles.fetch_chip(0.001, 179.9995, "bingmap", provider, fetcher=fetcher)
    requested_x = {int(p.strip("/").split("/")[1]) for p in server.requests}
    n = 1 << 18
    assert 0 in requested_x and n - 1 in requested_x  # both sides of the antimeridian
    assert chip.lonlat_bounds[2] > 180.0  # continuous coordinates, not wrapped
    assert any("antimeridian" in note for note in chip.notes)


def test_quadkey_template(server: TileServer, fetcher: TileFetcher) -> None:
    provider = XYZProvider(server.quadkey_template, "quadkey tiles", max_zoom=19)
    chip = tiles.fetch_chip(52.52, 13.405, "bingmap", provider, fetcher=fetcher)
    left, top = bing_window(52.52, 13.405)
    np.testing.assert_array_equal(chip.image, expected_window(18, left, top, 1500, 1500))
    assert all(p.startswith("/q/") and len(p.split("/")[2].split(".")[0]) == 18 for p in server.requests)


def test_512_pixel_tiles(fetcher: TileFetcher) -> None:
    with TileServer(tile_size=512) as srv:
        provider = XYZProvider(srv.url_template, "big tiles", max_zoom=19, tile_size=512)
        chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
        left, top = bing_window(45.0, 7.0)
        np.testing.assert_array_equal(chip.image, expected_window(17, left, top, 1500, 1500, size=512))
        assert {p.split("/")[1] for p in srv.requests} == {"17"}


@pytest.mark.parametrize(("lat", "lon"), [(lat, 7.0) for lat in LATS] + ANTIMERIDIAN)
def test_sentinel_is_warped_to_10m_in_4326(provider: XYZProvider, fetcher: TileFetcher, lat: float, lon: float) -> None:
    chip = tiles.fetch_chip(lat, lon, "sentinel", provider, fetcher=fetcher)
    assert chip.image.shape == (1280, 1280, 3) and chip.crs == CRS_4326
    assert chip.ground_resolution == 10.0
    z = _zoom_from_notes(chip)
    assert z == (13 if lat == 60.0 else 14)
    assert_warped_placement(chip, z)
    w, s, e, n = chip.bounds
    assert w < lon < e and s < lat < n
    assert (w + e) / 2 == pytest.approx(lon, abs=1e-9)


def test_googleearth_from_a_configured_provider(provider: XYZProvider, fetcher: TileFetcher) -> None:
    chip = tiles.fetch_chip(45.0, 7.0, "googleEarth", provider, fetcher=fetcher)
    assert chip.image.shape == (1024, 1024, 3) and chip.crs == CRS_3857
    assert chip.ground_resolution == 0.2
    z = _zoom_from_notes(chip)
    assert z == 20  # 0.106 m/px at 45°: the first zoom at least as fine as 0.2 m
    assert_warped_placement(chip, z)


def test_googleearth_needs_a_provider(monkeypatch: pytest.MonkeyPatch, server: TileServer, fetcher: TileFetcher) -> None:
    with pytest.raises(ProviderError, match="SAT2SOUND_GOOGLEEARTH_SOURCE"):
        tiles.fetch_chip(45.0, 7.0, "googleEarth")
    monkeypatch.setenv("SAT2SOUND_GOOGLEEARTH_SOURCE", server.url_template)
    chip = tiles.fetch_chip(45.0, 7.0, "googleEarth", fetcher=fetcher)
    assert chip.provider == f"127.0.0.1:{server.port}" and "user-configured" in chip.attribution


def test_coarse_provider_refused_for_bingmap(server: TileServer, fetcher: TileFetcher) -> None:
    eox_like = XYZProvider(server.url_template, "10 m tiles", max_zoom=14, name="coarse")
    with pytest.raises(ProviderError, match="zoom 14.*coarser than bingmap"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", eox_like, fetcher=fetcher)
    with pytest.raises(ProviderError, match="coarser"):
        tiles.fetch_chip(45.0, 7.0, "googleEarth", eox_like, fetcher=fetcher)
    assert server.request_count == 0


# --- caches ---------------------------------------------------------------------------------------


def test_second_fetch_makes_no_request(provider: XYZProvider, server: TileServer, fetcher: TileFetcher, tiles_home: Path) -> None:
    first = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    n = server.request_count
    assert n > 0 and fetcher.last_stats.network == n
    second = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    assert server.request_count == n and fetcher.last_stats.memory == n
    np.testing.assert_array_equal(first.image, second.image)
    # disk cache survives a new session (memory cleared, new fetcher)
    tiles.clear_memory_cache()
    other = TileFetcher(backoff=0.01)
    try:
        third = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=other)
        assert server.request_count == n and other.last_stats.disk == n
        np.testing.assert_array_equal(first.image, third.image)
    finally:
        other.close()
    files = list((tiles_home / "tiles").glob("*.mbtiles"))
    assert len(files) == 1 and files[0].name.startswith("loopback-")
    with sqlite3.connect(files[0]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0] == n
        z, col, row = conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles LIMIT 1").fetchone()
    assert z == 18
    left, top = bing_window(45.0, 7.0)
    assert left // 256 <= col <= (left + 1499) // 256
    assert top // 256 <= (1 << 18) - 1 - row <= (top + 1499) // 256  # TMS row flip


def test_corrupt_cache_entry_is_refetched(provider: XYZProvider, server: TileServer, fetcher: TileFetcher, tiles_home: Path) -> None:
    first = tiles.fetch_chip(-33.0, 151.0, "bingmap", provider, fetcher=fetcher)
    n = server.request_count
    path = next((tiles_home / "tiles").glob("*.mbtiles"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tiles SET tile_data = substr(tile_data, 1, 100) WHERE rowid = 1")
        conn.execute("UPDATE tiles SET tile_data = tile_data || x'00' WHERE rowid = 2")
    tiles.clear_memory_cache()
    second = tiles.fetch_chip(-33.0, 151.0, "bingmap", provider, fetcher=fetcher)
    assert server.request_count == n + 2
    np.testing.assert_array_equal(first.image, second.image)
    tiles.clear_memory_cache()
    tiles.fetch_chip(-33.0, 151.0, "bingmap", provider, fetcher=fetcher)
    assert server.request_count == n + 2  # repaired on disk


def test_corrupt_cache_file_is_replaced(provider: XYZProvider, server: TileServer, fetcher: TileFetcher, tiles_home: Path) -> None:
    cache_dir = tiles_home / "tiles"
    cache_dir.mkdir(parents=True)
    (cache_dir / f"{provider.cache_key}.mbtiles").write_bytes(b"this is not sqlite" * 100)
    chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    assert chip.image.shape == (1500, 1500, 3)
    assert list(cache_dir.glob("*.corrupt-*"))


def test_tile_cache_switch_off_keeps_memory_only(monkeypatch: pytest.MonkeyPatch, provider: XYZProvider, server: TileServer, fetcher: TileFetcher, tiles_home: Path) -> None:
    monkeypatch.setenv("SAT2SOUND_TILE_CACHE", "0")
    tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    n = server.request_count
    tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    assert server.request_count == n
    assert not list(tiles_home.rglob("*.mbtiles"))


def test_esri_like_policy_is_memory_only_unless_opted_in(monkeypatch: pytest.MonkeyPatch, server: TileServer, fetcher: TileFetcher, tiles_home: Path) -> None:
    esri_like = XYZProvider(server.url_template, "Powered by Esri", max_zoom=19, name="esri-like",
                            cache_policy="memory", disk_opt_in=True)
    tiles.fetch_chip(45.0, 7.0, "bingmap", esri_like, fetcher=fetcher)
    assert not list(tiles_home.rglob("*.mbtiles"))
    assert any(n == "cache: memory" for n in tiles.fetch_chip(45.0, 7.0, "bingmap", esri_like, fetcher=fetcher).notes)
    tiles.clear_memory_cache()
    monkeypatch.setenv("SAT2SOUND_ESRI_DISK_CACHE", "1")
    tiles.fetch_chip(45.0, 7.0, "bingmap", esri_like, fetcher=fetcher)
    assert len(list(tiles_home.rglob("*.mbtiles"))) == 1
    esri = tiles.get_provider("esri-world-imagery")
    assert esri.effective_cache_policy(tiles.get_config()) == "disk"
    monkeypatch.setenv("SAT2SOUND_ESRI_DISK_CACHE", "0")
    assert esri.effective_cache_policy(tiles.get_config()) == "memory"


def test_user_agent_is_sent(monkeypatch: pytest.MonkeyPatch, provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    monkeypatch.setenv("SAT2SOUND_USER_AGENT", "sat2sound-tests/9 (+mailto:test@example.org)")
    tiles.fetch_chip(0.0, 0.0, "bingmap", provider, fetcher=fetcher)
    assert server.user_agents == {"sat2sound-tests/9 (+mailto:test@example.org)"}


# --- faults ----------------------------------------------------------------------------------------


def test_429_then_success(provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    server.add_fault("429", times=2)
    chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    left, top = bing_window(45.0, 7.0)
    np.testing.assert_array_equal(chip.image, expected_window(18, left, top, 1500, 1500))
    assert server.request_count == fetcher.last_stats.network + 2


def test_500_retries_then_clear_error(provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    server.add_fault("500", times=None)
    with pytest.raises(TileFetchError, match=r"HTTP 500.*|after 4 attempts") as info:
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    assert "after 4 attempts (HTTP 500)" in str(info.value)
    assert server.request_count >= 4  # each tile is tried retries + 1 times before giving up


@pytest.mark.parametrize("fault", ["html", "garbage"])
def test_non_image_body_is_rejected(provider: XYZProvider, server: TileServer, fetcher: TileFetcher, fault: str) -> None:
    server.add_fault(fault, times=1)
    with pytest.raises(TileFetchError, match="not an image"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)


def test_placeholder_tile_by_hash(server: TileServer, fetcher: TileFetcher) -> None:
    provider = XYZProvider(server.url_template, "t", max_zoom=19, placeholder_hashes=[server.placeholder_sha256])
    server.add_fault("placeholder", times=1)
    with pytest.raises(NoImageryError, match="placeholder tiles for 1 of"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)


def test_placeholder_tiles_by_repetition(server: TileServer, fetcher: TileFetcher) -> None:
    provider = XYZProvider(server.url_template, "t", max_zoom=19, repeats_are_placeholders=True)
    chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)  # real tiles never repeat
    assert chip.image.shape == (1500, 1500, 3)
    tiles.clear_memory_cache()
    server.add_fault("placeholder", times=4)
    provider2 = XYZProvider(server.url_template + "?v=2", "t", max_zoom=19, repeats_are_placeholders=True)
    with pytest.raises(NoImageryError, match="placeholder tiles for 4 of"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider2, fetcher=fetcher)


def test_small_grey_tile_as_placeholder(server: TileServer, fetcher: TileFetcher) -> None:
    provider = XYZProvider(server.url_template, "t", max_zoom=19, grey_small_is_placeholder=True)
    chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)  # coloured tiles pass
    assert chip.image.shape == (1500, 1500, 3)
    tiles.clear_memory_cache()
    server.add_fault("placeholder", times=1)
    provider2 = XYZProvider(server.url_template + "?v=3", "t", max_zoom=19, grey_small_is_placeholder=True)
    with pytest.raises(NoImageryError, match="placeholder tiles for 1 of"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider2, fetcher=fetcher)


def test_uniform_tile_as_placeholder(server: TileServer, fetcher: TileFetcher) -> None:
    provider = XYZProvider(server.url_template, "t", max_zoom=19, uniform_is_placeholder=True)
    server.add_fault("blank", times=1)
    with pytest.raises(NoImageryError, match="placeholder"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)


def test_all_blank_chip(provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    server.add_fault("blank", times=None)
    with pytest.raises(NoImageryError, match=r"blank \(one uniform colour \(128, 128, 128\)\)"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)


@pytest.mark.parametrize("fault", ["404", "transparent"])
def test_missing_tiles(provider: XYZProvider, server: TileServer, fetcher: TileFetcher, fault: str) -> None:
    server.add_fault(fault, times=1)
    with pytest.raises(NoImageryError, match="no imagery for 1 of"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)


def test_timeout_is_retried(provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    server.add_fault("slow", times=1)
    chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    left, top = bing_window(45.0, 7.0)
    np.testing.assert_array_equal(chip.image, expected_window(18, left, top, 1500, 1500))
    assert server.request_count == fetcher.last_stats.network + 1


def test_persistent_timeout_fails_clearly(provider: XYZProvider, server: TileServer) -> None:
    server.add_fault("slow", times=None)
    quick = TileFetcher(retries=1, backoff=0.01, timeout=(1.0, 0.1), max_workers=16)
    try:
        with pytest.raises(TileFetchError, match=r"after 2 attempts \(timed out"):
            tiles.fetch_chip(0.0, 0.0, "bingmap", provider, fetcher=quick)
    finally:
        server.clear_faults()
        quick.close()


def test_window_beyond_mercator_limit_is_black_and_noted(provider: XYZProvider, fetcher: TileFetcher) -> None:
    chip = tiles.fetch_chip(85.0511, 0.0, "bingmap", provider, fetcher=fetcher)
    note = next(n for n in chip.notes if "beyond web mercator" in n)
    rows = int(note.split()[0])
    assert 0 < rows < 1500
    assert (chip.image[:rows] == 0).all() and chip.image[rows:].any()


def test_offline_uses_caches_only(monkeypatch: pytest.MonkeyPatch, provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    monkeypatch.setenv("SAT2SOUND_OFFLINE", "1")
    with pytest.raises(TileFetchError, match=r"offline \(SAT2SOUND_OFFLINE is set\): 49 of 49 tiles"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    assert server.request_count == 0
    monkeypatch.setenv("SAT2SOUND_OFFLINE", "0")
    tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    n = server.request_count
    tiles.clear_memory_cache()
    monkeypatch.setenv("SAT2SOUND_OFFLINE", "1")
    chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)  # from the disk cache
    assert server.request_count == n and chip.image.shape == (1500, 1500, 3)


def test_unreachable_server(fetcher: TileFetcher) -> None:
    with TileServer() as srv:
        template = srv.url_template
    dead = XYZProvider(template, "gone", max_zoom=19, name="gone")
    with pytest.raises(TileFetchError, match=r"gone: tile .* failed after 4 attempts \(network error"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", dead, fetcher=fetcher)


def test_unwritable_cache_home_falls_back_to_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, provider: XYZProvider, server: TileServer, fetcher: TileFetcher) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("SAT2SOUND_HOME", str(blocker / "home"))  # mkdir under a file fails
    chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    n = server.request_count
    assert chip.image.shape == (1500, 1500, 3) and n > 0
    tiles.fetch_chip(45.0, 7.0, "bingmap", provider, fetcher=fetcher)
    assert server.request_count == n
