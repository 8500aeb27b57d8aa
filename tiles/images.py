"""Opening tile bodies safely: the pixel count is read from the image header before anything is decoded.

PIL's :func:`PIL.Image.open` is lazy (it parses the header only), so a 12000² PNG of a few hundred KB is
refused here from its declared size instead of being decoded into gigabytes. Only the raster formats tile
servers use are accepted (PNG, JPEG, WebP, GIF).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

TILE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


class TileImageError(ValueError):
    """A tile body is not an image of an accepted format, or declares more pixels than allowed."""


def open_tile_image(data: bytes, max_pixels: int) -> Image.Image:
    """The lazily opened image of ``data``; raises :class:`TileImageError` when it is not an image or
    declares more than ``max_pixels`` pixels (checked before any pixel is decoded)."""
    too_many = (
        f"more than the {max_pixels} px allowed per tile (SAT2SOUND_TILE_MAX_PIXELS); tiles are 256 or 512 px"
    )
    try:
        with warnings.catch_warnings():
            # Our own limit below is far tighter than PIL's global one; its warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=TILE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise TileImageError(f"the image declares too many pixels ({exc}), {too_many}") from None
    except Exception as exc:  # PIL raises many types for bad input
        raise TileImageError(f"not a PNG/JPEG/WebP/GIF image ({type(exc).__name__}: {exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise TileImageError(f"the image declares {width}×{height} px, {too_many}")
    return img


def image_ok(data: bytes, max_pixels: int) -> bool:
    """True when ``data`` parses as an image within ``max_pixels`` (header + structure; no full decode)."""
    try:
        with open_tile_image(data, max_pixels) as img:
            img.verify()
        return True
    except Exception:
        return False
