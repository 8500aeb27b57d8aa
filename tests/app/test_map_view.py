"""The folium map: local assets only, stable between reruns, overlay exactly on its footprint."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit_folium import _get_feature_group_string, _get_map_string, generate_js_hash

from app import map_view, vendor_assets
from app.inputs import Point
from app.map_view import Basemap, Footprint, Legend, Overlay, build_layers, build_map

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


def _layers(**kw) -> str:  # type: ignore[no-untyped-def]
    """The JavaScript streamlit-folium sends for the result layers (``feature_group_to_add``)."""
    m = build_map(BASE)
    return _get_feature_group_string(build_layers(**kw), map=m)


def test_every_script_and_stylesheet_is_served_locally() -> None:
    m = build_map(BASE)
    build_layers(point=P, footprints=FP, overlay=_overlay(), legend=Legend("birds", 0.0, 1.0)).add_to(m)
    links = _links(m)
    assert links, "folium should still load Leaflet"
    assert all(u.startswith("/app/static/vendor/") for u in links), links
    missing = vendor_assets.missing_files()
    assert not missing, f"vendored files missing: {missing}; run `python app/vendor_assets.py`"
    for u in links:
        assert (vendor_assets.VENDOR_DIR / u.removeprefix("/app/static/vendor/")).is_file(), u
    # only Leaflet: jQuery, Bootstrap and the marker fonts are not used by this map
    assert sorted(Path(u).name for u in links) == ["leaflet.css", "leaflet.js"], links
    html = m.get_root().render()
    assert "cdn.jsdelivr" not in _get_map_string(m) and "Test imagery" in html


def test_base_url_path_is_honoured() -> None:
    m = build_map(BASE, base_url_path="/maps/")
    assert all(u.startswith("/maps/app/static/vendor/") for u in _links(m))


def test_the_base_map_is_the_same_for_every_result_so_a_click_does_not_remount_it() -> None:
    def key(**kw):  # type: ignore[no-untyped-def]
        return generate_js_hash(_get_map_string(build_map(BASE, **kw)), "map")

    assert key() == key(), "identical state must not remount the map"
    assert key() != key(center=Point(10.0, 10.0)), "the start view is part of the base map"
    other = Basemap("other", "http://127.0.0.1:2/{z}/{x}/{y}.png", "Other imagery", 18)
    assert key() != generate_js_hash(_get_map_string(build_map(other)), "map"), "a new basemap remounts"


def test_a_new_overlay_changes_the_layers_and_the_same_state_does_not() -> None:
    a = _layers(point=P, footprints=FP, overlay=_overlay(200))
    b = _layers(point=P, footprints=FP, overlay=_overlay(200))
    c = _layers(point=P, footprints=FP, overlay=_overlay(10))
    assert a == b, "identical state must not redraw the layers"
    assert a != c, "a new heatmap must reach the browser"
    assert _layers() != a and "map_div.addLayer(" in _layers()  # before a click: an empty group


def test_overlay_bounds_and_footprints_are_written_as_given() -> None:
    js = _layers(point=P, footprints=FP, overlay=_overlay(), opacity=0.35)
    assert re.search(r"L\.imageOverlay\(\s*\"data:image/png;base64,", js)
    assert "[[44.999, 6.999], [45.001, 7.001]]" in js
    assert "[[44.997, 6.997], [45.003, 7.003]]" in js
    assert '"opacity": 0.35' in js
    assert "[45.0, 7.0]" in js  # the clicked point's marker
    assert "Test imagery" in _get_map_string(build_map(BASE))


def test_legend_is_a_leaflet_control_that_leaves_with_its_layers() -> None:
    js = _layers(overlay=_overlay(), legend=Legend("word: birds", -0.5, 2.0))
    assert "L.control(" in js and "word: birds" in js
    assert "map.removeControl(" in js and ".addTo(feature_group_feature_group_0)" in js


def test_click_relay_uses_the_components_own_globals() -> None:
    js = _get_map_string(build_map(BASE))
    assert 'map_div.on("click"' in js and "window.Streamlit.setComponentValue(value)" in js
    assert "data.previous_data = value" in js
    # the installed streamlit-folium frontend debounces clicks and exposes what the relay uses
    import streamlit_folium

    bundle = next((Path(streamlit_folium.__file__).parent / "frontend" / "build" / "static" / "js").glob("main*.js"))
    text = bundle.read_text(errors="replace")
    for name in ("window.__GLOBAL_DATA__", "previous_data:", "window.Streamlit=", "debouncedUpdateComponentValue"):
        assert name in text, f"streamlit-folium's frontend no longer has {name}: review map_view.ClickRelay"


@pytest.mark.parametrize(("span", "zoom"), [(180.0, 18), (900.0, 15), (12800.0, 12)])
def test_zoom_for_span(span: float, zoom: int) -> None:
    assert map_view.zoom_for_span(span) == zoom


def test_offered_scales_match_the_model_config() -> None:
    from app import bridge
    from sat2sound_core.model.config import ALLOWED_SCALES

    assert bridge.ALLOWED_SCALES == ALLOWED_SCALES
    assert bridge.allowed_scales("SoundingEarth_withmeta") == [1]
    assert bridge.allowed_scales("sentinel_nometa") == [1, 3, 5]
