"""Image preprocessing: a satellite source tile -> the (3, 224, 224) tensor the official model saw.

The official evaluation transform (docs/model.md#image) is CenterCrop(scale × tile) -> Resize(224, PIL
bicubic) -> /255 -> ImageNet normalisation. Here it is PIL plus numpy, bit-exact with torchvision's
PIL path, including its zero padding when the crop is larger than the image (googleEarth at scale 5)
and its rounding of the crop offset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from sat2sound_core.common.errors import InputError

log = logging.getLogger(__name__)

INPUT_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

ImageLike = Image.Image | np.ndarray


def _config() -> tuple[dict, dict, dict]:
    from sat2sound_core.model import config

    return config.TILE_SIZE, config.SOURCE_SIZE, config.ALLOWED_SCALES


def _check_sat_type(sat_type: str) -> str:
    tile, _, _ = _config()
    if sat_type not in tile:
        raise InputError(f"Unknown sat_type {sat_type!r}; use one of {', '.join(sorted(tile))}.")
    return sat_type


def _check_scale(scale: object, sat_type: str) -> int:
    _, _, allowed = _config()
    valid = sorted(allowed[sat_type])
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or int(scale) not in valid:
        raise InputError(
            f"Scale {scale!r} is not available for sat_type {sat_type!r}; use one of {valid} "
            "(the zoom levels the model was trained on)."
        )
    return int(scale)


def _as_rgb_array(image: ImageLike) -> np.ndarray:
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image)
    if isinstance(image, torch.Tensor):
        raise InputError(
            "image_to_tensor takes the source tile as a PIL image or an HxWx3 uint8 numpy array, "
            "not a tensor; pass `tensor.numpy()` of an HxWx3 uint8 image."
        )
    if not isinstance(image, np.ndarray):
        raise InputError(f"Expected a PIL image or an HxWx3 uint8 numpy array, got {type(image).__name__}.")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(
            f"The image array has shape {image.shape}; give HxWx3 (RGB, channels last). "
            "Drop an alpha channel with `arr[..., :3]`; stack a grey image to 3 channels."
        )
    if image.dtype != np.uint8:
        raise InputError(
            f"The image array has dtype {image.dtype}; give uint8 pixels 0–255 "
            "(e.g. `np.clip(x * 255, 0, 255).round().astype(np.uint8)` for floats in [0, 1])."
        )
    return image


def center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """Square centre crop of an HxWx3 array, zero-padding first when ``size`` exceeds the image.

    Padding puts floor(diff/2) pixels before and the rest after; the crop offset is
    round((H - size) / 2) with Python's rounding (as torchvision's ``center_crop``).
    """
    h, w = pixels.shape[:2]
    if size > h or size > w:
        pad_t = (size - h) // 2 if size > h else 0
        pad_b = (size - h + 1) // 2 if size > h else 0
        pad_l = (size - w) // 2 if size > w else 0
        pad_r = (size - w + 1) // 2 if size > w else 0
        pixels = np.pad(pixels, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)))
        h, w = pixels.shape[:2]
        if h == size and w == size:
            return pixels
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return pixels[top : top + size, left : left + size]


def image_to_tensor(image: ImageLike, scale: int, sat_type: str) -> torch.Tensor:
    """Turn one source tile into the model's float32 (3, 224, 224) input, as the official eval transform.

    ``image`` is the full source tile at the training ground resolution (PIL RGB or HxWx3 uint8;
    bingmap 1500², sentinel 1280², googleEarth 1024²), ``scale`` the zoom level (1, 3 or 5 where the
    sat_type allows it). The centre ``scale × tile`` pixels (tile 300 for bingmap, 256 otherwise)
    are cropped, resized to 224² with PIL bicubic, scaled to [0, 1] and ImageNet-normalised.
    Raises :class:`InputError` for a wrong shape, dtype, scale or sat_type, or a tile too small
    for the crop.
    """
    _check_sat_type(sat_type)
    zoom = _check_scale(scale, sat_type)
    tile, source, _ = _config()
    pixels = _as_rgb_array(image)
    crop = zoom * int(tile[sat_type])
    need = min(crop, int(source[sat_type]))
    h, w = pixels.shape[:2]
    if min(h, w) < need:
        raise InputError(
            f"The {sat_type} image is {w}x{h} pixels but scale {zoom} crops the centre {crop}x{crop}; "
            f"give the whole source tile ({source[sat_type]}x{source[sat_type]} at the training resolution)."
        )
    if (h, w) != (source[sat_type], source[sat_type]):
        log.debug("%s tile is %dx%d, expected %d²; cropping its centre", sat_type, w, h, source[sat_type])
    return crop_resize_normalize(pixels, crop)


def crop_resize_normalize(pixels: np.ndarray, crop: int) -> torch.Tensor:
    """The transform itself, without validation: centre crop ``crop``², bicubic 224², normalise.

    ``pixels`` is HxWx3 uint8. Exposed for callers that already validated their input (and for
    crops outside the trained zoom levels, e.g. to study the model).
    """
    cropped = np.ascontiguousarray(center_crop(pixels, crop))
    resized = Image.fromarray(cropped).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    x = np.asarray(resized).astype(np.float32) / np.float32(255.0)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def images_to_tensor(images: Sequence[ImageLike], scales: int | Sequence[int], sat_type: str) -> torch.Tensor:
    """Batch version of :func:`image_to_tensor`: (B, 3, 224, 224) from B tiles and one scale or B scales."""
    if len(images) == 0:
        raise InputError("No images given; pass at least one source tile.")
    if isinstance(scales, int | np.integer) and not isinstance(scales, bool):
        per_item = [int(scales)] * len(images)
    else:
        per_item = list(scales)  # type: ignore[arg-type]
        if len(per_item) != len(images):
            raise InputError(f"Got {len(images)} images but {len(per_item)} scales; give one scale or one per image.")
    return torch.stack([image_to_tensor(im, s, sat_type) for im, s in zip(images, per_item, strict=True)])
