"""Writing georeferenced rasters (GeoTIFF or Cloud-Optimized GeoTIFF) with rasterio.

:func:`write_raster` is the one raster writer of the product: :meth:`tiles.chip.Chip.to_geotiff` writes
chips with it and ``sat2sound_core.export`` writes heatmaps with it (on the chip's patch grid). Give it
an array, a CRS and an affine transform; it writes atomically to a path (:func:`tiles.files.atomic_path`)
or returns the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import DatasetWriter, MemoryFile

from tiles.errors import TilesInputError
from tiles.files import atomic_path


def _profile(data: np.ndarray, crs: CRS, transform: Affine, driver: str, nodata: float | None) -> dict[str, object]:
    count, height, width = data.shape
    profile: dict[str, object] = {
        "driver": driver,
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
    }
    if np.issubdtype(data.dtype, np.floating):
        profile["predictor"] = 3
    if driver == "COG":
        profile.update(blocksize=256, overview_resampling="average", BIGTIFF="IF_SAFER")
    else:
        profile.update(tiled=width >= 256 and height >= 256, blockxsize=256, blockysize=256)
        if not profile["tiled"]:
            profile.pop("blockxsize")
            profile.pop("blockysize")
    return profile


def write_raster(
    dest: str | Path | None,
    data: np.ndarray,
    crs: CRS | str,
    transform: Affine,
    *,
    nodata: float | None = None,
    tags: Mapping[str, object] | None = None,
    band_descriptions: Sequence[str] | None = None,
    band_tags: Sequence[Mapping[str, object]] | None = None,
    driver: str = "COG",
) -> bytes | None:
    """Write ``data`` ((bands, rows, cols) or (rows, cols)) as a GeoTIFF/COG with ``crs`` and ``transform``.

    ``dest`` None returns the file's bytes (for download buttons); a path is written atomically and None
    is returned. ``tags`` go into the dataset tags (put the imagery source and attribution there);
    ``band_descriptions``/``band_tags`` describe each band. Use ``nodata=float('nan')`` for float rasters.
    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise TilesInputError(
            f"raster data must be (bands, rows, cols) or (rows, cols), got shape {arr.shape}; "
            "stack the bands along the first axis"
        )
    crs = CRS.from_user_input(crs)
    profile = _profile(arr, crs, transform, driver, nodata)

    def fill(dst: DatasetWriter) -> None:
        dst.write(arr)
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
        for i, desc in enumerate(band_descriptions or (), start=1):
            dst.set_band_description(i, desc)
        for i, btags in enumerate(band_tags or (), start=1):
            dst.update_tags(i, **{k: str(v) for k, v in btags.items()})

    if dest is None:
        with MemoryFile() as mem:
            with mem.open(**profile) as dst:
                fill(dst)
            return bytes(mem.read())
    with atomic_path(dest) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        fill(dst)
    return None
