"""Small real inputs for the engine tests: georeferenced grids, codebook-structured patch scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from sat2sound_core.heatmaps import GridGeometry, grid_geometry


@dataclass
class SimpleChip:
    """The geometric part of a chip (image, CRS, transform): what the heatmap geometry needs."""

    image: np.ndarray
    crs: Any
    transform: Affine
    provider: str = "test"
    attribution: str = "test imagery"


def mercator_chip(x0: float = 1_000_000.0, y0: float = 6_000_000.0, px: float = 0.6, n: int = 300) -> SimpleChip:
    img = np.zeros((n, n, 3), np.uint8)
    return SimpleChip(img, CRS.from_epsg(3857), Affine(px, 0, x0, 0, -px, y0))


def lonlat_chip(west: float = 10.0, north: float = 60.0, deg: float = 0.001, n: int = 256) -> SimpleChip:
    img = np.zeros((n, n, 3), np.uint8)
    return SimpleChip(img, CRS.from_epsg(4326), Affine(deg, 0, west, 0, -deg, north))


def geometry(chip: SimpleChip | None = None) -> GridGeometry:
    return grid_geometry(chip if chip is not None else mercator_chip())
