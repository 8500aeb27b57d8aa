"""image_to_tensor: bit-exact with the official eval transform, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sat2sound_core import image_to_tensor
from sat2sound_core.common.errors import InputError
from sat2sound_core.model.config import ALLOWED_SCALES, SOURCE_SIZE, TILE_SIZE
from sat2sound_core.preprocess.image import center_crop, crop_resize_normalize, images_to_tensor
from tests.conftest import reference_file


@pytest.fixture(scope="module")
def golden_shared(sat2sound_reference: Path) -> dict:
    return torch.load(reference_file(sat2sound_reference, "golden_shared.pt"), weights_only=False)


def _sat_tensor_keys(golden: dict) -> list[tuple[str, int]]:
    out = []
    for key in golden:
        if key.startswith("sat_tensor/"):
            _, sat_type, zl = key.split("/")
            out.append((sat_type, int(zl[2:])))
    return out


def test_every_golden_transform_is_bit_exact(golden_shared: dict) -> None:
    cases = _sat_tensor_keys(golden_shared)
    assert len(cases) >= 7
    for sat_type, zoom in cases:
        pixels = golden_shared[f"image_uint8/{sat_type}"].numpy()
        expected = golden_shared[f"sat_tensor/{sat_type}/zl{zoom}"]
        if zoom in ALLOWED_SCALES[sat_type]:
            got = image_to_tensor(pixels, zoom, sat_type)
            # the PIL input path gives the same tensor as the array path
            assert torch.equal(image_to_tensor(Image.fromarray(pixels), zoom, sat_type), got)
        else:  # a golden zoom outside the trained scales (googleEarth zl3): the raw transform
            got = crop_resize_normalize(pixels, zoom * TILE_SIZE[sat_type])
        assert got.dtype == torch.float32 and got.shape == (3, 224, 224)
        assert torch.equal(got, expected), (sat_type, zoom, (got - expected).abs().max())


def test_batch_helper_stacks_per_item_scales(golden_shared: dict) -> None:
    pixels = golden_shared["image_uint8/bingmap"].numpy()
    batch = images_to_tensor([pixels, pixels], [1, 5], "bingmap")
    assert batch.shape == (2, 3, 224, 224)
    assert torch.equal(batch[0], golden_shared["sat_tensor/bingmap/zl1"])
    assert torch.equal(batch[1], golden_shared["sat_tensor/bingmap/zl5"])
    assert torch.equal(images_to_tensor([pixels], 3, "bingmap")[0], golden_shared["sat_tensor/bingmap/zl3"])
    with pytest.raises(InputError, match="one scale or one per image"):
        images_to_tensor([pixels, pixels], [1], "bingmap")
    with pytest.raises(InputError, match="at least one"):
        images_to_tensor([], 1, "bingmap")


def test_center_crop_zero_pads_like_torchvision() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    out = center_crop(img, 10)  # larger than both sides: 5 rows pad 2 before/3 after, 3 cols 1 before/2 after
    assert out.shape == (10, 10, 3)
    assert np.array_equal(out[2:7, 1:8], img)
    mask = np.ones((10, 10), bool)
    mask[2:7, 1:8] = False
    assert (out[mask] == 0).all()
    # half-pixel offsets use Python's round: rows round(0.5) = 0, columns round(1.5) = 2
    assert np.array_equal(center_crop(img, 4), img[0:4, 2:6])
    crop = center_crop(img, 3)
    assert np.array_equal(crop, img[1:4, 2:5])


def test_grey_and_rgba_pil_images_are_converted() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(1500, 1500, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((1500, 1500, 1), 128, np.uint8)], axis=2)
    assert torch.equal(image_to_tensor(Image.fromarray(rgba), 1, "bingmap"), image_to_tensor(rgb, 1, "bingmap"))


@pytest.mark.parametrize(
    ("image", "scale", "sat_type", "message"),
    [
        (np.zeros((1500, 1500), np.uint8), 1, "bingmap", "HxWx3"),
        (np.zeros((1500, 1500, 4), np.uint8), 1, "bingmap", "alpha"),
        (np.zeros((1500, 1500, 3), np.float32), 1, "bingmap", "uint8"),
        (np.zeros((1500, 1500, 3), np.uint8), 2, "bingmap", r"\[1, 3, 5\]"),
        (np.zeros((1024, 1024, 3), np.uint8), 3, "googleEarth", r"\[1\]"),
        (np.zeros((1500, 1500, 3), np.uint8), True, "bingmap", "Scale"),
        (np.zeros((1500, 1500, 3), np.uint8), 1, "landsat", "bingmap, googleEarth, sentinel"),
        (np.zeros((1000, 1500, 3), np.uint8), 5, "bingmap", "1500x1000 pixels"),
        (torch.zeros(1500, 1500, 3, dtype=torch.uint8), 1, "bingmap", "not a tensor"),
        ("tile.png", 1, "bingmap", "PIL image"),
    ],
)
def test_bad_input_is_refused_with_the_fix(image: object, scale: object, sat_type: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        image_to_tensor(image, scale, sat_type)  # type: ignore[arg-type]


def test_a_larger_tile_is_cropped_at_its_centre() -> None:
    rng = np.random.default_rng(2)
    big = rng.integers(0, 256, size=(2000, 2000, 3), dtype=np.uint8)
    side = SOURCE_SIZE["bingmap"]
    off = (2000 - side) // 2
    assert torch.equal(image_to_tensor(big, 1, "bingmap"), image_to_tensor(big[off : off + side, off : off + side], 1, "bingmap"))
