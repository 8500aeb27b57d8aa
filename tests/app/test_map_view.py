"""The folium map: local assets only, stable between reruns, overlay exactly on its footprint."""

from __future__ import annotations

import re

import numpy as np
import pytest
from streamlit_folium import _get_map_string, generate_js_hash

from app import map_view, vendor_assets
from app.inputs import Point
from app.map_view import Basemap, Footprint, Legend, Overlay, build_map

BASE = Basemap("test", "http://127.0.0.1:1/{z}/{x}/{y}.png", "Test imagery © nobody", 18)
P = Point(45.0, 7.0)
FP = [Footprint(1, [[44.999, 6.999], [45.001, 7.001]], True), Footprint(3, [[44.997, 6.997], [45.003, 7.003]])]


def _links(m) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for el in map_view._walk(m):
        out += [u for _, u in getattr(el, "default_js", []) or []]
        out += [u for _, u in getattr(el, "default_css", []) or []]
    return out


def _overlay(value: int = 200) -> Overlay:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = value
    rgba[..., 3] = 255
    return Overlay(rgba=rgba, bounds=[[44.999, 6.999], [45.001, 7.001]], label="birds")


def test_every_script_and_stylesheet_is_served_locally() -> None:
    m = build_map(BASE, point=P, footprints=FP, overlay=_overlay(), legend=Legend("birds", 0.0, 1.0))
    links = _links(m)
    assert links, "folium should still load Leaflet"
    assert all(u.startswith("/app/static/vendor/") for u in links), links
    missing = vendor_assets.missing_files()
    assert not missing, f"vendored files missing: {missing}; run `python app/vendor_assets.py`"
    for u in links:
        assert (vendor_assets.VENDOR_DIR / u.removeprefix("/app/static/vendor/")).is_file(), u
    html = m.get_root().render()
    assert "cdn.jsdelivr" not in _get_map_string(m) and "Test imagery" in html


def test_base_url_path_is_honoured() -> None:
    m = build_map(BASE, base_url_path="/maps/")
    assert all(u.startswith("/maps/app/static/vendor/") for u in _links(m))


def test_same_state_gives_the_same_component_key_and_a_new_overlay_changes_it() -> None:
    def key(**kw):  # type: ignore[no-untyped-def]
        return generate_js_hash(_get_map_string(build_map(BASE, **kw)), "map")

    a = key(point=P, footprints=FP, overlay=_overlay(200))
    b = key(point=P, footprints=FP, overlay=_overlay(200))
    c = key(point=P, footprints=FP, overlay=_overlay(10))
    assert a == b, "identical state must not remount the map"
    assert a != c, "a new heatmap must reach the browser"


def test_overlay_bounds_and_footprints_are_written_as_given() -> None:
    m = build_map(BASE, point=P, footprints=FP, overlay=_overlay(), opacity=0.35)
    js = _get_map_string(m)
    assert re.search(r"L\.imageOverlay\(\s*\"data:image/png;base64,", js)
    assert "[[44.999, 6.999], [45.001, 7.001]]" in js
    assert "[[44.997, 6.997], [45.003, 7.003]]" in js
    assert '"opacity": 0.35' in js
    assert "Test imagery" in js


def test_legend_is_a_leaflet_control_with_the_range() -> None:
    m = build_map(BASE, overlay=_overlay(), legend=Legend("word: birds", -0.5, 2.0))
    js = _get_map_string(m)
    assert "L.control(" in js and "word: birds" in js


@pytest.mark.parametrize(("span", "zoom"), [(180.0, 18), (900.0, 15), (12800.0, 12)])
def test_zoom_for_span(span: float, zoom: int) -> None:
    assert map_view.zoom_for_span(span) == zoom


def test_offered_scales_match_the_model_config() -> None:
    from app import bridge
    from sat2sound_core.model.config import ALLOWED_SCALES

    assert bridge.ALLOWED_SCALES == ALLOWED_SCALES
    assert bridge.allowed_scales("SoundingEarth_withmeta") == [1]
    assert bridge.allowed_scales("sentinel_nometa") == [1, 3, 5]
