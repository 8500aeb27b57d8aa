"""Turn heatmaps into pictures: colour maps, map-ready RGBA overlays, colour bars, PNG bytes.

Overlays are drawn for folium's ``ImageOverlay``, which stretches an image linearly in web-mercator
between its bounds. A chip in EPSG:3857 is already linear in mercator and is only upsampled; a chip in
any other CRS (EPSG:4326 for Sentinel-type chips: rows equally spaced in latitude) is resampled onto
rows equally spaced in mercator y first, so every pixel lands on the ground it belongs to.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from sat2sound_core.common.errors import InputError

if TYPE_CHECKING:
    from sat2sound_core.maps.heatmaps import Heatmap

# Colour maps as a few anchor colours (position, r, g, b), interpolated linearly. Hand-picked,
# monotonic in lightness so low and high values read correctly in greyscale too.
_ANCHORS: dict[str, list[tuple[float, int, int, int]]] = {
    "soundscape": [
        (0.0, 20, 12, 60),
        (0.25, 60, 40, 140),
        (0.5, 30, 130, 150),
        (0.75, 120, 200, 90),
        (1.0, 250, 235, 60),
    ],
    "heat": [(0.0, 10, 0, 0), (0.35, 170, 20, 10), (0.7, 250, 150, 20), (1.0, 255, 255, 210)],
    "gray": [(0.0, 0, 0, 0), (1.0, 255, 255, 255)],
}
CMAPS = tuple(_ANCHORS)


def colormap_lut(name: str = "soundscape", n: int = 256) -> np.ndarray:
    """(n, 3) uint8 lookup table of a named colour map (see ``CMAPS``)."""
    if name not in _ANCHORS:
        raise InputError(f"unknown colour map {name!r}; use one of {', '.join(CMAPS)}")
    anchors = np.array(_ANCHORS[name], dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    lut = np.stack([np.interp(x, anchors[:, 0], anchors[:, k]) for k in (1, 2, 3)], axis=1)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def normalize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Scale to [0, 1] between vmin and vmax (default: the finite min/max); NaN stays NaN."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    lo = float(finite.min()) if vmin is None and finite.size else (vmin or 0.0)
    hi = float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    if hi <= lo:
        out = np.where(np.isfinite(arr), 0.0, np.nan)
    else:
        out = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    return out


def upsample(values: np.ndarray, height: int, width: int, smooth: bool = True) -> np.ndarray:
    """Resize a (h, w) grid to (height, width): bilinear (align_corners=False, as the official demo
    upsamples 14×14 → 224²) or nearest (each patch a flat square)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    if smooth:
        out = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(t, size=(height, width), mode="nearest")
    return out[0, 0].numpy()


def _merc_y(lat: np.ndarray | float) -> np.ndarray:
    lat = np.clip(np.asarray(lat, dtype=np.float64), -85.05112878, 85.05112878)
    return np.asarray(np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)), dtype=np.float64)


def _merc_lat(y: np.ndarray) -> np.ndarray:
    return np.asarray(np.degrees(2 * np.arctan(np.exp(y)) - np.pi / 2), dtype=np.float64)


def to_mercator_grid(heatmap: Heatmap, height: int, width: int, smooth: bool = True) -> np.ndarray:
    """The heatmap sampled on a (height, width) grid linear in web-mercator over its lon/lat bounds.

    EPSG:3857 grids are upsampled directly. Other CRSs: each output pixel centre is mapped to the
    heatmap's CRS and the value is read there (bilinear between patch centres, or the containing cell).
    """
    from rasterio.crs import CRS

    crs = CRS.from_user_input(heatmap.crs)
    if crs.to_epsg() == 3857:
        return upsample(heatmap.values, height, width, smooth)
    west, south, east, north = heatmap.lonlat_bounds
    cols = west + (np.arange(width) + 0.5) / width * (east - west)
    y_top, y_bot = _merc_y(north), _merc_y(south)
    lats = _merc_lat(y_top + (np.arange(height) + 0.5) / height * (y_bot - y_top))
    lon_g, lat_g = np.meshgrid(cols, lats)
    if crs.to_epsg() == 4326:
        xs, ys = lon_g, lat_g
    else:
        from rasterio.warp import transform as warp_transform

        xs_l, ys_l = warp_transform("EPSG:4326", crs, lon_g.ravel().tolist(), lat_g.ravel().tolist())
        xs, ys = np.asarray(xs_l).reshape(lon_g.shape), np.asarray(ys_l).reshape(lat_g.shape)
    inv = ~heatmap.transform
    fc = inv.a * xs + inv.b * ys + inv.c  # fractional column in the 14×14 grid
    fr = inv.d * xs + inv.e * ys + inv.f
    return _sample(heatmap.values, fr, fc, smooth)


def _sample(values: np.ndarray, fr: np.ndarray, fc: np.ndarray, smooth: bool) -> np.ndarray:
    h, w = values.shape
    if not smooth:
        r = np.clip(np.floor(fr).astype(int), 0, h - 1)
        c = np.clip(np.floor(fc).astype(int), 0, w - 1)
        return np.asarray(values[r, c], dtype=np.float32)
    # bilinear between cell centres, edge-clamped (same convention as align_corners=False)
    r = np.clip(fr - 0.5, 0, h - 1)
    c = np.clip(fc - 0.5, 0, w - 1)
    r0 = np.floor(r).astype(int)
    c0 = np.floor(c).astype(int)
    r1 = np.minimum(r0 + 1, h - 1)
    c1 = np.minimum(c0 + 1, w - 1)
    dr, dc = r - r0, c - c0
    v = values.astype(np.float64)
    top = v[r0, c0] * (1 - dc) + v[r0, c1] * dc
    bot = v[r1, c0] * (1 - dc) + v[r1, c1] * dc
    return np.asarray(top * (1 - dr) + bot * dr, dtype=np.float32)


def colorize(
    unit: np.ndarray, cmap: str = "soundscape", opacity: float = 0.7, alpha_ramp: float = 0.0
) -> np.ndarray:
    """Map [0, 1] values to RGBA uint8. NaN is fully transparent; ``alpha_ramp`` in [0, 1] fades the
    low end (0 = uniform opacity, 1 = alpha proportional to the value)."""
    if not 0.0 <= opacity <= 1.0:
        raise InputError(f"opacity must be within [0, 1], got {opacity}")
    lut = colormap_lut(cmap)
    valid = np.isfinite(unit)
    idx = np.clip(np.rint(np.nan_to_num(unit) * 255), 0, 255).astype(np.int64)
    rgba = np.zeros((*unit.shape, 4), dtype=np.uint8)
    rgba[..., :3] = lut[idx]
    alpha = opacity * ((1 - alpha_ramp) + alpha_ramp * np.nan_to_num(unit))
    rgba[..., 3] = np.where(valid, np.clip(np.rint(alpha * 255), 0, 255), 0).astype(np.uint8)
    return rgba


def heatmap_rgba(
    heatmap: Heatmap,
    size: int | tuple[int, int] = 256,
    cmap: str = "soundscape",
    vmin: float | None = None,
    vmax: float | None = None,
    opacity: float = 0.7,
    smooth: bool = True,
    mercator: bool = True,
    alpha_ramp: float = 0.0,
) -> np.ndarray:
    """RGBA uint8 (H, W, 4) of a heatmap. ``mercator=True`` (default) gives rows linear in web-mercator
    for ``ImageOverlay(bounds=heatmap.overlay_bounds)``; ``False`` keeps the chip's own pixel grid
    (for a PNG that matches the chip image or the GeoTIFF)."""
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1 or height * width > 4096 * 4096:
        raise InputError(f"overlay size {size} is out of range (1 … 4096 px a side)")
    if mercator:
        grid = to_mercator_grid(heatmap, height, width, smooth)
    else:
        grid = upsample(heatmap.values, height, width, smooth)
    return colorize(normalize(grid, vmin, vmax), cmap, opacity, alpha_ramp)


def colorbar_rgba(
    cmap: str = "soundscape", width: int = 256, height: int = 16, vertical: bool = False
) -> np.ndarray:
    """An opaque colour-bar image (low values left, or bottom when vertical)."""
    ramp = np.linspace(0.0, 1.0, width if not vertical else height)
    if vertical:
        unit = np.repeat(ramp[::-1, None], width, axis=1)
    else:
        unit = np.repeat(ramp[None, :], height, axis=0)
    return colorize(unit, cmap, opacity=1.0)


def colorbar_stops(cmap: str = "soundscape", n: int = 6) -> list[str]:
    """n hex colours along a colour map, for an HTML/branca legend (``branca.colormap.LinearColormap``)."""
    lut = colormap_lut(cmap, n)
    return ["#{:02x}{:02x}{:02x}".format(*row) for row in lut]


def legend_html(
    title: str, vmin: float, vmax: float, cmap: str = "soundscape", unit: str = "relevance"
) -> str:
    """A small self-contained HTML legend (gradient bar + min/max labels) for a map or a page."""
    stops = ", ".join(colorbar_stops(cmap, 8))
    return (
        '<div style="font:12px sans-serif;background:rgba(255,255,255,.85);padding:4px 6px;border-radius:4px">'
        f"<div>{_escape(title)}</div>"
        f'<div style="height:10px;width:160px;background:linear-gradient(to right, {stops})"></div>'
        f'<div style="display:flex;justify-content:space-between;width:160px">'
        f"<span>{_fmt(vmin)}</span><span>{_escape(unit)}</span><span>{_fmt(vmax)}</span></div></div>"
    )


def png_bytes(rgba: np.ndarray) -> bytes:
    """PNG-encode an (H, W, 3|4) uint8 image."""
    from PIL import Image

    arr = np.asarray(rgba)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"PNG needs an (H, W, 3|4) uint8 image, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def blend(base_rgb: np.ndarray, overlay_rgba: np.ndarray) -> np.ndarray:
    """Alpha-blend an RGBA overlay onto an RGB image of the same size (for previews)."""
    a = overlay_rgba[..., 3:4].astype(np.float32) / 255.0
    out = base_rgb[..., :3].astype(np.float32) * (1 - a) + overlay_rgba[..., :3].astype(np.float32) * a
    return np.asarray(np.clip(np.rint(out), 0, 255), dtype=np.uint8)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.3g}"


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
