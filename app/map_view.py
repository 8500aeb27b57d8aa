"""Build the folium map the app shows: basemap, clicked point, chip footprints and the heatmap overlay.

The map is split in two so a click never remounts it. :func:`build_map` is the base map (basemap
and options only, at a fixed start view): it depends on nothing a click changes, so its generated
JavaScript, and with it streamlit-folium's component key, stays the same and the browser keeps the
same iframe, Leaflet instance and loaded tiles. :func:`build_layers` is everything a click changes
(marker, footprints, overlay, legend) as one ``FeatureGroup`` that streamlit-folium swaps in place
(``feature_group_to_add``); the page moves the view with the component's ``center``/``zoom``.
:class:`ClickRelay` sends a click to the app at once instead of after streamlit-folium's 250 ms
debounce.

Leaflet comes from ``app/static/vendor`` (see ``app/vendor_assets.py``), never a CDN; folium's other
default assets (jQuery, Bootstrap, Font Awesome, awesome-markers) are not used by this map and are
left out so the iframe loads less.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import folium
import numpy as np
from branca.element import MacroElement, Template

from app import vendor_assets
from app.inputs import Point

log = logging.getLogger(__name__)

Bounds = list[list[float]]  # [[south, west], [north, east]], as folium and Leaflet take them

FOOTPRINT_COLOURS = {1: "#ffd400", 3: "#ff7f0e", 5: "#d62728"}
DEFAULT_VIEW = Point(lat=52.5163, lon=13.3777)


@dataclass(frozen=True)
class Basemap:
    """An XYZ tile layer for display with the attribution its terms require (``notice``: why it is
    not the one the user chose, shown under the map; empty when it is)."""

    name: str
    url: str
    attribution: str
    max_zoom: int = 19
    notice: str = ""


@dataclass(frozen=True)
class Footprint:
    """The ground a chip covers at one scale."""

    scale: int
    bounds: Bounds
    active: bool = False


@dataclass(frozen=True)
class Overlay:
    """A colour-mapped heatmap image (rows already linear in web-mercator: ``Heatmap.to_rgba``) and
    where it lies."""

    rgba: np.ndarray
    bounds: Bounds
    label: str


class Legend(MacroElement):
    """A colour legend drawn as a Leaflet control in the map's corner (no extra JS libraries).

    branca's ColorMap would make streamlit-folium load d3 from a CDN, so the legend is plain HTML
    from :func:`sat2sound_core.maps.render.legend_html`. It is a small Leaflet layer that adds the control
    when its parent (the map or the click's ``FeatureGroup``) is added and removes it with the group,
    so a new result's legend replaces the old one without remounting the map.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = new (L.Layer.extend({
            onAdd: function (map) {
                var control = L.control({position: "bottomright"});
                control.onAdd = function () {
                    var div = L.DomUtil.create("div", "sat2sound-legend");
                    div.innerHTML = {{ this.html|tojson }};
                    return div;
                };
                this._control = control.addTo(map);
                return this;
            },
            onRemove: function (map) {
                if (this._control) { map.removeControl(this._control); this._control = null; }
                return this;
            }
        }))();
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, title: str, vmin: float, vmax: float, cmap: str = "soundscape") -> None:
        super().__init__()
        self._name = "Legend"
        from sat2sound_core.maps.render import legend_html

        self.html = legend_html(title, vmin, vmax, cmap=cmap)


class ClickRelay(MacroElement):
    """Send a map click to the app immediately.

    streamlit-folium reports clicks through a 250 ms debounce. This handler (registered before the
    component's own) sends the same value (``{"last_clicked": latlng}``, the only returned object)
    through the component's ``Streamlit.setComponentValue`` right away and records it as the
    component's previous value, so the debounced call that follows finds nothing new and sends
    nothing. If the component's globals are missing (another streamlit-folium version), it does
    nothing and the component's own path still reports the click.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.on("click", function (e) {
            var data = window.__GLOBAL_DATA__;
            if (!data || !window.Streamlit || !window.Streamlit.setComponentValue) { return; }
            var value = {last_clicked: e.latlng};
            if (JSON.stringify(value) === JSON.stringify(data.previous_data)) { return; }
            data.lat_lng_clicked = e.latlng;
            data.previous_data = value;
            window.Streamlit.setComponentValue(value);
        });
        {% endmacro %}
        """
    )

    def __init__(self) -> None:
        super().__init__()
        self._name = "ClickRelay"


# folium's default assets this map needs; the rest (jQuery, Bootstrap, Font Awesome, awesome-markers)
# serve elements the app does not use.
NEEDED_ASSETS = frozenset({"leaflet", "leaflet_css"})


def static_url(relative: str, base_url_path: str = "") -> str:
    """URL path under which Streamlit serves ``app/static/vendor/<relative>``."""
    base = "/" + base_url_path.strip("/") if base_url_path.strip("/") else ""
    return f"{base}/app/static/vendor/{relative}"


def localize_assets(m: MacroElement, base_url_path: str = "") -> list[str]:
    """Point every element's CDN JS/CSS at the vendored copies; return the URLs that had none.

    Assets with no local copy are dropped (with a warning), because a CDN request would hang or fail
    on an air-gapped machine. The app only uses elements whose assets are all vendored. The map's
    own defaults are cut to :data:`NEEDED_ASSETS` (Leaflet), the only ones this map uses.
    """
    mapping = vendor_assets.cdn_map()
    dropped: list[str] = []
    for element in _walk(m):
        for attr in ("default_js", "default_css"):
            entries = getattr(element, attr, None)
            if not entries:
                continue
            local = []
            for name, url in entries:
                if isinstance(element, folium.Map) and name not in NEEDED_ASSETS:
                    continue
                if url in mapping:
                    local.append((name, static_url(mapping[url], base_url_path)))
                elif url.startswith(("http://", "https://", "//")):
                    dropped.append(url)
                else:
                    local.append((name, url))
            setattr(element, attr, local)
    for url in dropped:
        log.debug("no vendored copy of %s; left out", url)
    return dropped


def _walk(element: object):  # type: ignore[no-untyped-def]
    yield element
    for child in getattr(element, "_children", {}).values():
        yield from _walk(child)


def zoom_for_span(span_m: float) -> int:
    """A zoom level at which a footprint ``span_m`` metres wide fills a good part of a ~700 px map."""
    # 156543 m/px at zoom 0 on the equator; aim for the footprint to be ~350 px wide.
    zoom = int(np.floor(np.log2(156543.0 * 350.0 / max(span_m, 1.0))))
    return int(np.clip(zoom, 3, 18))


def build_map(
    basemap: Basemap,
    *,
    center: Point | None = None,
    zoom: int = 13,
    base_url_path: str = "",
) -> folium.Map:
    """The base map: basemap and options at a start view (see the module docstring for why nothing a
    click changes belongs here)."""
    view = center or DEFAULT_VIEW
    m = folium.Map(
        location=[view.lat, view.lon],
        zoom_start=zoom,
        tiles=None,
        control_scale=True,
        max_zoom=basemap.max_zoom,
    )
    folium.TileLayer(
        tiles=basemap.url,
        attr=basemap.attribution,
        name=basemap.name,
        max_zoom=basemap.max_zoom,
        max_native_zoom=basemap.max_zoom,
        overlay=False,
    ).add_to(m)
    m.add_child(ClickRelay())
    localize_assets(m, base_url_path)
    return m


def build_layers(
    *,
    point: Point | None = None,
    footprints: Sequence[Footprint] = (),
    overlay: Overlay | None = None,
    legend: Legend | None = None,
    opacity: float = 0.6,
    base_url_path: str = "",
) -> folium.FeatureGroup:
    """What a click changes (footprints, heatmap overlay, legend, marker) as one ``FeatureGroup``.

    Passed to ``st_folium(feature_group_to_add=...)``, the group replaces the previous one on the
    mounted map. Always pass one (empty before the first click): streamlit-folium does not remove a
    group when ``None`` follows one.
    """
    fg = folium.FeatureGroup(name="sat2sound result", control=False)
    for fp in sorted(footprints, key=lambda f: -f.scale):
        folium.Rectangle(
            bounds=fp.bounds,
            color=FOOTPRINT_COLOURS.get(fp.scale, "#ffffff"),
            weight=3 if fp.active else 1.5,
            dash_array=None if fp.active else "6 4",
            fill=False,
            # Non-interactive so a click inside a footprint still reaches the map.
            interactive=False,
        ).add_to(fg)
    if overlay is not None:
        folium.raster_layers.ImageOverlay(
            image=overlay.rgba,
            bounds=overlay.bounds,
            opacity=float(opacity),
            name=f"heatmap: {overlay.label}",
            mercator_project=False,  # to_rgba resampled the rows to mercator already, for any CRS
            interactive=False,
            zindex=10,
        ).add_to(fg)
    if legend is not None:
        fg.add_child(legend)
    if point is not None:
        folium.CircleMarker(
            location=[point.lat, point.lon],
            radius=6,
            color="#ffffff",
            weight=2,
            fill=True,
            fill_color="#1f77b4",
            fill_opacity=1.0,
            interactive=False,
        ).add_to(fg)
    localize_assets(fg, base_url_path)
    return fg
