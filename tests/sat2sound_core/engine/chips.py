"""Real ``tiles.Chip`` objects for engine tests, on the exact training grids, with patterned pixels."""

from __future__ import annotations

import numpy as np


def make_chip(lat: float = 38.63, lon: float = -90.2, geometry: str = "bingmap", seed: int = 0):
    import tiles
    from tiles.geometry import target_grid

    grid = target_grid(geometry, lat, lon)
    rng = np.random.default_rng(seed)
    # smooth random texture + blocks, so patches differ from each other
    small = rng.integers(0, 256, size=(grid.height // 50 + 1, grid.width // 50 + 1, 3), dtype=np.uint8)
    image = np.kron(small, np.ones((50, 50, 1), np.uint8))[: grid.height, : grid.width]
    return tiles.Chip(
        image=np.ascontiguousarray(image),
        crs=grid.crs,
        transform=grid.transform,
        ground_resolution=grid.ground_resolution,
        provider="synthetic",
        attribution="synthetic test pixels",
        geometry=geometry,
        center=(lat, lon),
    )
