"""Assemble a pixel window of a web-mercator tile pyramid from tiles (with antimeridian wrap).

Windows are given in global pixel coordinates at one zoom (origin at the world's top-left). Column
indices outside ``[0, 2**z)`` wrap around the antimeridian; rows outside the world (beyond ±85.05°) stay
black and are reported in the notes. Decoded tiles are checked for the provider's "no imagery" signs.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from tiles.config import DEFAULT_TILE_MAX_PIXELS
from tiles.errors import NoImageryError, TileFetchError
from tiles.fetcher import Tile, TileFetcher
from tiles.images import TileImageError, open_tile_image
from tiles.providers import TileSource


def decode_tile(
    data: bytes, source: TileSource, tile: Tile, max_pixels: int = DEFAULT_TILE_MAX_PIXELS
) -> np.ndarray | None:
    """(T, T, 3) uint8 pixels of a tile body; None when it is fully transparent (no data).

    The declared size is checked against ``max_pixels`` and the tile size before any pixel is decoded.
    """
    size = source.tile_size
    try:
        img = open_tile_image(data, max_pixels)
    except TileImageError as exc:
        raise TileFetchError(f"{source.name}: tile {tile} cannot be used ({exc}).") from None
    if img.size != (size, size):
        width, height = img.size
        img.close()
        raise TileFetchError(
            f"{source.name}: tile {tile} is {width}×{height} px, expected {size}×{size}; "
            "set tile_size on the provider to the size its server sends."
        )
    try:
        with img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = np.asarray(img.convert("RGBA"))
                if rgba[..., 3].max() == 0:
                    return None
                rgb = rgba[..., :3]
            else:
                rgb = np.asarray(img.convert("RGB"))
    except Exception as exc:
        raise TileFetchError(f"{source.name}: tile {tile} cannot be decoded as an image ({exc}).") from None
    if rgb.shape[:2] != (size, size):
        raise TileFetchError(
            f"{source.name}: tile {tile} is {rgb.shape[1]}×{rgb.shape[0]} px, expected {size}×{size}; "
            "set tile_size on the provider to the size its server sends."
        )
    return rgb


def _placeholders(source: TileSource, bodies: dict[Tile, bytes | None], pixels: dict[Tile, np.ndarray]) -> list[Tile]:
    digests = {t: hashlib.sha256(b).hexdigest() for t, b in bodies.items() if b is not None}
    bad = {t for t, d in digests.items() if d in source.placeholder_hashes}
    if source.repeats_are_placeholders:
        counts = Counter(digests.values())
        bad |= {t for t, d in digests.items() if counts[d] >= 3}
    if source.uniform_is_placeholder:
        for t, px in pixels.items():
            if (px == px[0, 0]).all():
                bad.add(t)
    if source.grey_small_is_placeholder:
        for t, px in pixels.items():
            body = bodies.get(t)
            if body is not None and len(body) < GREY_PLACEHOLDER_MAX_BYTES and _achromatic(px):
                bad.add(t)
    return sorted(bad)


GREY_PLACEHOLDER_MAX_BYTES = 8000


def _achromatic(px: np.ndarray, tolerance: int = 3) -> bool:
    rgb = px.astype(np.int16)
    return bool(
        np.abs(rgb[..., 0] - rgb[..., 1]).max() <= tolerance and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= tolerance
    )


def assemble(
    source: TileSource, fetcher: TileFetcher, z: int, left: int, top: int, width: int, height: int
) -> tuple[np.ndarray, list[str]]:
    """Pixels of the window [left, left+width) × [top, top+height) at zoom ``z`` of ``source``.

    Returns (image (height, width, 3) uint8, notes). Raises :class:`NoImageryError` when tiles inside the
    world are missing, transparent or provider placeholders.
    """
    size = source.tile_size
    n = 1 << z
    tx0, tx1 = left // size, (left + width - 1) // size
    ty0, ty1 = top // size, (top + height - 1) // size
    wanted = {(tx, ty): (z, tx % n, ty) for tx in range(tx0, tx1 + 1) for ty in range(ty0, ty1 + 1) if 0 <= ty < n}
    unique = sorted(set(wanted.values()))
    bodies = fetcher.get_tiles(source, unique)
    max_pixels = fetcher.config.tile_max_pixels
    pixels: dict[Tile, np.ndarray] = {}
    missing: list[Tile] = []
    for t in unique:
        body = bodies.get(t)
        decoded = decode_tile(body, source, t, max_pixels) if body is not None else None
        if decoded is None:
            missing.append(t)
        else:
            pixels[t] = decoded
    where = f"around zoom {z} tile x {tx0 % n}-{tx1 % n}, y {ty0}-{ty1}"
    if missing:
        raise NoImageryError(
            f"{source.name} has no imagery for {len(missing)} of {len(unique)} tiles {where} (missing or "
            "transparent tiles). Choose another provider or a point it covers."
        )
    fake = _placeholders(source, bodies, pixels)
    if fake:
        raise NoImageryError(
            f"{source.name} sent 'no imagery here' placeholder tiles for {len(fake)} of {len(unique)} tiles "
            f"{where}. It has no real imagery at this zoom here; choose another provider or a local file."
        )
    canvas = np.zeros(((ty1 - ty0 + 1) * size, (tx1 - tx0 + 1) * size, 3), dtype=np.uint8)
    for (tx, ty), t in wanted.items():
        r, c = (ty - ty0) * size, (tx - tx0) * size
        canvas[r : r + size, c : c + size] = pixels[t]
    ox, oy = left - tx0 * size, top - ty0 * size
    image = np.ascontiguousarray(canvas[oy : oy + height, ox : ox + width])
    notes = []
    outside = max(0, -top) + max(0, top + height - n * size)
    if outside:
        notes.append(f"{min(outside, height)} rows lie beyond web mercator's ±85.05° and are black")
    if tx0 < 0 or tx1 >= n:
        notes.append("window crosses the antimeridian; tile columns wrapped")
    return image, notes
