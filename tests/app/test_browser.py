"""End to end in a real browser: ``streamlit run`` on a loopback port, Debian's Chromium via Playwright.

Synthetic full-size checkpoint, synthetic gallery, loopback tiles, tiny TangoFlux, a stand-in T5; no
network (the map's Leaflet comes from app/static/vendor). A screenshot is saved under
``test-artifacts/`` when a step fails; ``SAT2SOUND_UPDATE_SCREENSHOT=1`` also refreshes the README's
``assets/screenshot.png``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app import fixtures, harness

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def server(app_env_values: dict[str, str]) -> Iterator[harness.StreamlitServer]:
    why = harness.chromium_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    srv = harness.StreamlitServer(app_env_values, harness.ARTIFACTS / "test_browser_streamlit.log")
    srv.start()
    yield srv
    srv.stop()


def _point(page) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    text = page.locator("h3", has_text="· scale").first.inner_text()
    m = re.search(r"(-?\d+\.\d+), (-?\d+\.\d+) · scale (\d)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def _choose(page, label: str, option: str) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    box.locator("input").click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")


def test_click_listen_synthesise_upload_and_export(server: harness.StreamlitServer, tmp_path: Path) -> None:
    import csv
    import json

    import rasterio
    import soundfile as sf
    from rasterio.warp import transform_bounds

    external: list[str] = []
    with harness.browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        try:
            page.goto(server.url)
            harness.wait_map_painted(page, timeout_ms=120_000)

            # click -> overlay on the map, legend, captions with scores
            harness.click_map(page, 40, -30)
            srcs = harness.wait_new_overlay(page, [], timeout_s=600)
            assert srcs[0].startswith("data:image/png;base64,")
            harness.map_frame(page).locator(".sat2sound-legend").wait_for(timeout=30_000)
            page.get_by_text(re.compile(r"score \d\.\d{3}")).first.wait_for(timeout=60_000)
            lat, lon = _point(page)
            assert abs(lat - 45.0) < 0.05 and abs(lon - 7.0) < 0.05
            # a mark in the map's iframe: it survives the overlay swaps below (the map is not remounted)
            harness.map_frame(page).locator("#map_div").evaluate("el => { window.__sat2soundMark = 1; }")

            # gallery audio plays
            page.get_by_role("button", name="Play gallery audio").first.click()
            page.locator("audio").first.wait_for(state="attached", timeout=60_000)
            duration = page.evaluate(
                """async () => {
                    const a = document.querySelector('audio');
                    if (a.readyState < 1) await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}));
                    await a.play();
                    return a.duration;
                }"""
            )
            assert duration > 0.5

            # synthesise a clip with tiny TangoFlux, then a player for it appears
            page.get_by_role("button", name="Synthesise", exact=True).first.click()
            page.get_by_text("synthesised", exact=True).first.wait_for(timeout=300_000)
            # the player arrives with the same rerun as the label, but may be attached a moment later
            page.wait_for_function("document.querySelectorAll('audio').length >= 2", timeout=60_000)

            # upload a WAV -> its heatmap replaces the overlay
            _choose(page, "Heatmap", "Uploaded audio clip")
            page.locator('input[type="file"]').wait_for(state="attached", timeout=60_000)
            page.locator('input[type="file"]').set_input_files(
                files=[{"name": "chirps.wav", "mimeType": "audio/wav", "buffer": fixtures.wav_clip()}]
            )
            srcs2 = harness.wait_new_overlay(page, srcs, timeout_s=300)
            assert srcs2 != srcs
            harness.map_frame(page).locator(".sat2sound-legend", has_text="chirps.wav").wait_for(timeout=60_000)
            assert harness.map_frame(page).locator(".sat2sound-legend").count() == 1  # the old legend left
            assert harness.map_frame(page).locator("#map_div").evaluate("el => window.__sat2soundMark") == 1

            # the same clip composed with a caption gives another map
            _choose(page, "Heatmap", "Audio clip + caption")
            srcs3 = harness.wait_new_overlay(page, srcs2, timeout_s=300)
            assert srcs3 != srcs2
            harness.map_frame(page).locator(".sat2sound-legend", has_text="audio +").wait_for(timeout=60_000)

            # the GeoTIFF holds both heatmaps, in EPSG:3857, around the click
            # a button drawn by an earlier rerun (fewer bands) may still be on the page: wait for the
            # one that holds all three maps, and download from it
            tif_button = page.get_by_role("button", name=re.compile(r"GeoTIFF \(3 heatmap band"))
            _open_tab(page, "Downloads", tif_button)
            tif = tmp_path / "heatmaps.tif"
            _download(page, tif_button).save_as(tif)
            with rasterio.open(tif) as ds:
                assert ds.crs.to_epsg() == 3857
                assert ds.count >= 3  # text, audio clip and composed maps
                descriptions = " | ".join(d or "" for d in ds.descriptions)
                assert "chirps.wav" in descriptions and "audio + " in descriptions
                west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
                assert west < lon < east and south < lat < north
                assert ds.read(1).shape == (ds.height, ds.width)

            # the other downloads: captions CSV, the synthesised WAV and its JSON sidecar, the PNG
            got = {}
            for name, pattern in (("csv", "Captions (CSV)"), ("wav", "WAV: synth"), ("json", "JSON sidecar"),
                                  ("png", "PNG of the heatmap")):
                download = _download(page, page.get_by_role("button", name=re.compile(re.escape(pattern))).first)
                got[name] = tmp_path / download.suggested_filename
                download.save_as(got[name])
            rows = list(csv.DictReader(got["csv"].open()))
            assert len(rows) == 8 and rows[0]["rank"] == "1" and float(rows[0]["score"]) >= float(rows[1]["score"])
            samples, rate = sf.read(got["wav"])
            assert rate > 0 and len(samples) > 0
            assert json.loads(got["json"].read_text())["lat"] == pytest.approx(lat, abs=1e-6)
            assert got["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            assert not external, f"requests left the machine: {external[:5]}"
            if os.environ.get("SAT2SOUND_UPDATE_SCREENSHOT"):
                _readme_screenshot(page)
        except BaseException:
            harness.screenshot(page, "test_browser_failure")
            (harness.ARTIFACTS / "test_browser_server.log").write_text(server.log_tail(200))
            raise


def _download(page, button, attempts: int = 3):  # type: ignore[no-untyped-def]
    """Click a download button until its file arrives. Streamlit builds the file when clicked and
    forgets a button's file when the page reruns; a click that lands on a button drawn by the previous
    run finds nothing ("Deferred file … not found" in the server log) and the user clicks again."""
    for attempt in range(attempts):
        try:
            with page.expect_download(timeout=60_000 if attempt < attempts - 1 else 120_000) as info:
                button.click()
            return info.value
        except Exception:
            if attempt == attempts - 1:
                raise
            page.wait_for_timeout(1000)
    raise AssertionError("unreachable")


def _open_tab(page, name: str, expect, attempts: int = 5) -> None:  # type: ignore[no-untyped-def]
    """Click a results tab until ``expect`` shows (a rerun that is still arriving can redraw the tabs)."""
    for _ in range(attempts):
        page.get_by_role("tab", name=name).click()
        try:
            expect.first.wait_for(timeout=10_000)
            return
        except Exception:
            page.wait_for_timeout(500)
    expect.first.wait_for(timeout=10_000)


def _readme_screenshot(page) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    page.get_by_role("tab", name="Captions").click()
    page.wait_for_timeout(500)
    harness.ARTIFACTS.mkdir(exist_ok=True)
    raw = harness.ARTIFACTS / "readme_viewport.png"
    page.screenshot(path=str(raw))
    img = Image.open(raw).convert("RGB")
    img.thumbnail((900, 900))
    # plain RGB: palette quantisation posterises the heatmap gradients
    img.save(harness.REPO / "assets" / "screenshot.png", optimize=True)


def test_two_browser_sessions_clicking_at_once_get_their_own_places(server: harness.StreamlitServer) -> None:
    with harness.browser() as b:
        pages = [b.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2)]
        try:
            for page in pages:
                page.goto(server.url)
            for page in pages:
                harness.wait_map_painted(page, timeout_ms=120_000)
            # both clicks go out before either result comes back
            harness.click_map(pages[0], -120, 80)
            harness.click_map(pages[1], 120, -80)
            for page in pages:
                harness.wait_new_overlay(page, [], timeout_s=300)
            (lat0, lon0), (lat1, lon1) = (_point(p) for p in pages)
            # the map opens at 45.0, 7.0: left/down of centre is west/south, right/up is east/north
            assert lon0 < 7.0 < lon1 and lat0 < 45.0 < lat1
            # each page's overlay is its own (different chips give different maps)
            assert harness.overlay_srcs(pages[0]) != harness.overlay_srcs(pages[1])
        except BaseException:
            for i, page in enumerate(pages):
                harness.screenshot(page, f"test_browser_two_sessions_{i}")
            raise
