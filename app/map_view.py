"""Build the folium map the app shows: basemap, clicked point, chip footprints and the heatmap overlay.

The map is a pure function of what the user has chosen (basemap, point, footprints, overlay,
opacity), so between reruns where none of these change the generated JavaScript is identical and
streamlit-folium keeps the same iframe (no remount, the user's pan/zoom is kept). A new result changes
the overlay and remounts the map once, centred on the click.

Leaflet/jQuery/Bootstrap come from ``app/static/vendor`` (see ``app/vendor_assets.py``), never a CDN.
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
    """An XYZ tile layer for display with the attribution its terms require."""

    name: str
    url: str
    attribution: str
    max_zoom: int = 19


@dataclass(frozen=True)
class Footprint:
    """The ground a chip covers at one scale."""

    scale: int
    bounds: Bounds
    active: bool = False


@dataclass(frozen=True)
class Overlay:
    """A colour-mapped heatmap image and where it lies; ``mercator_project`` for EPSG:4326 images."""

    rgba: np.ndarray
    bounds: Bounds
    label: str
    mercator_project: bool = False


class Legend(MacroElement):
    """A colour legend drawn as a Leaflet control in the map's corner (no extra JS libraries).

    branca's ColorMap would make streamlit-folium load d3 from a CDN, so the legend is plain HTML
    from :func:`sat2sound_core.render.legend_html`.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.control({position: "bottomright"});
        {{ this.get_name() }}.onAdd = function (map) {
            var div = L.DomUtil.create("div", "sat2sound-legend");
            div.innerHTML = {{ this.html|tojson }};
            return div;
        };
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, title: str, vmin: float, vmax: float, cmap: str = "soundscape") -> None:
        super().__init__()
        self._name = "Legend"
        from sat2sound_core.render import legend_html

        self.html = legend_html(title, vmin, vmax, cmap=cmap)


def static_url(relative: str, base_url_path: str = "") -> str:
    """URL path under which Streamlit serves ``app/static/vendor/<relative>``."""
    base = "/" + base_url_path.strip("/") if base_url_path.strip("/") else ""
    return f"{base}/app/static/vendor/{relative}"


def localize_assets(m: folium.Map, base_url_path: str = "") -> list[str]:
    """Point every element's CDN JS/CSS at the vendored copies; return the URLs that had none.

    Assets with no local copy are dropped (with a warning), because a CDN request would hang or fail
    on an air-gapped machine. The app only uses elements whose assets are all vendored.
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
    zoom: int = 15,
    point: Point | None = None,
    footprints: Sequence[Footprint] = (),
    overlay: Overlay | None = None,
    legend: Legend | None = None,
    opacity: float = 0.6,
    base_url_path: str = "",
) -> folium.Map:
    """The whole map for the current state (see the module docstring for why it is rebuilt each run)."""
    view = center or point or DEFAULT_VIEW
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
    for fp in sorted(footprints, key=lambda f: -f.scale):
        folium.Rectangle(
            bounds=fp.bounds,
            color=FOOTPRINT_COLOURS.get(fp.scale, "#ffffff"),
            weight=3 if fp.active else 1.5,
            dash_array=None if fp.active else "6 4",
            fill=False,
            # Non-interactive so a click inside a footprint still reaches the map.
            interactive=False,
        ).add_to(m)
    if overlay is not None:
        folium.raster_layers.ImageOverlay(
            image=overlay.rgba,
            bounds=overlay.bounds,
            opacity=float(opacity),
            name=f"heatmap: {overlay.label}",
            mercator_project=overlay.mercator_project,
            interactive=False,
            zindex=10,
        ).add_to(m)
    if legend is not None:
        m.add_child(legend)
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
        ).add_to(m)
    localize_assets(m, base_url_path)
    return m
