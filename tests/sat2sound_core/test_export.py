"""Export: COG read back with rasterio, PNG, WAV + JSON sidecars, captions, atomic failures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import soundfile as sf

from sat2sound_core.common.errors import InputError
from sat2sound_core.export import (
    geotiff_bytes,
    heatmap_png_bytes,
    hits_csv_bytes,
    write_audio,
    write_geotiff,
    write_hits,
)
from sat2sound_core.maps.concepts import concept_map
from sat2sound_core.maps.heatmaps import grid_geometry, make_heatmap
from sat2sound_core.retrieval import Hit
from tests.fixtures.grid_chips import lonlat_chip, mercator_chip


def _maps(chip):
    geo = grid_geometry(chip)
    rng = np.random.default_rng(0)
    a = make_heatmap(rng.normal(size=(14, 14)), geo, "birds singing", "text")
    b = make_heatmap(rng.normal(size=(14, 14)), geo, "traffic noise", "audio", codes=[1, 2])
    return geo, a, b


@pytest.mark.parametrize("chip", [mercator_chip(), lonlat_chip()], ids=["epsg3857", "epsg4326"])
def test_geotiff_round_trip(tmp_path: Path, chip) -> None:
    geo, a, b = _maps(chip)
    scores = np.random.default_rng(1).normal(size=(196, 50)).astype(np.float32)
    cmap = concept_map(scores, geo, top_k=3)
    path = write_geotiff(
        tmp_path / "out.tif", [a, b], chip, concept_map=cmap, checkpoint="bingmap_withmeta", scale=3,
        metadata={"lat": 1.5, "month": 5},
    )
    with rasterio.open(path) as src:
        assert src.count == 3 and src.dtypes == ("float32",) * 3
        assert src.crs == chip.crs
        assert src.transform.almost_equals(a.transform)
        assert src.descriptions == ("birds singing", "traffic noise", "concept_id")
        np.testing.assert_array_equal(src.read(1), a.values)
        np.testing.assert_array_equal(src.read(2), b.values)
        np.testing.assert_array_equal(src.read(3), cmap.labels.astype(np.float32))
        assert np.isnan(src.nodata)
        tags = src.tags()
        assert tags["checkpoint"] == "bingmap_withmeta" and tags["scale"] == "3"
        assert tags["provider"] == "test" and tags["attribution"] == "test imagery"
        assert json.loads(tags["metadata"]) == {"lat": 1.5, "month": 5}
        assert tags["software"] == "sat2sound-map" and tags["software_version"]
        assert src.tags(2)["kind"] == "audio" and json.loads(src.tags(2)["details"]) == {"codes": [1, 2]}
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        # the ground point of patch (2, 5) reads that patch's value
        x, y = a.cell_center(2, 5)
        assert next(src.sample([(x, y)]))[0] == pytest.approx(a.values[2, 5])
        assert src.bounds == pytest.approx(a.bounds)


def test_geotiff_upsampled_keeps_bounds(tmp_path: Path) -> None:
    chip = mercator_chip()
    _, a, _ = _maps(chip)
    data = geotiff_bytes([a], chip, size=56)
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        assert (src.width, src.height) == (56, 56)
        assert src.bounds == pytest.approx(a.bounds)
        x, y = a.cell_center(7, 7)
        assert next(src.sample([(x, y)]))[0] == pytest.approx(a.values[7, 7], abs=0.5)


def test_geotiff_rejects_mixed_chips_and_empty(tmp_path: Path) -> None:
    _, a, _ = _maps(mercator_chip())
    _, c, _ = _maps(mercator_chip(x0=0.0))
    with pytest.raises(InputError, match="another grid"):
        geotiff_bytes([a, c])
    with pytest.raises(InputError, match="nothing to export"):
        geotiff_bytes([])


def test_unwritable_path_leaves_nothing(tmp_path: Path) -> None:
    _, a, _ = _maps(mercator_chip())
    with pytest.raises(InputError, match="does not exist"):
        write_geotiff(tmp_path / "missing" / "x.tif", [a])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="does not exist"):
        write_geotiff(tmp_path / "afile" / "x.tif", [a])
    (tmp_path / "adir.tif").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        write_geotiff(tmp_path / "adir.tif", [a])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.tif", "afile"]


def test_failure_during_write_removes_temp_file(tmp_path: Path) -> None:
    from sat2sound_core.export import atomic_write

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []


def test_png_wav_and_captions(tmp_path: Path) -> None:
    _, a, _ = _maps(mercator_chip())
    from PIL import Image

    img = Image.open(io.BytesIO(heatmap_png_bytes(a, size=64, base=np.full((300, 300, 3), 80, np.uint8))))
    assert img.size == (64, 64)
    t = np.linspace(0, 1, 16000, endpoint=False)
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    wav, side = write_audio(tmp_path / "clip", tone, 16000, {"caption": "a tone", "row": 3})
    data, rate = sf.read(wav)
    assert rate == 16000 and data.shape == (16000,)
    np.testing.assert_allclose(data, tone, atol=1e-4)
    meta = json.loads(side.read_text())
    assert meta["caption"] == "a tone" and meta["duration_s"] == pytest.approx(1.0) and meta["sample_rate"] == 16000
    from sat2sound_core.export import audio_sidecar_bytes, png_bytes, wav_bytes

    assert json.loads(audio_sidecar_bytes(tone, 16000, {"caption": "a tone", "row": 3})) == meta
    assert wav_bytes(tone, 16000) == wav.read_bytes()
    assert png_bytes(a, size=32) == heatmap_png_bytes(a, size=32)
    with pytest.raises(InputError, match="no audio"):
        write_audio(tmp_path / "empty.wav", np.zeros(0), 16000)
    hits = [Hit(1, 0.9, "birds, \"quoted\"", 4, True, 1), Hit(2, 0.5, "wind", 7, False, 1)]
    rows = hits_csv_bytes(hits).decode().splitlines()
    assert rows[0].startswith("rank,score,caption") and '"birds, ""quoted"""' in rows[1]
    out = write_hits(tmp_path / "hits.json", hits, {"lat": 1.0})
    doc = json.loads(out.read_text())
    assert doc["context"] == {"lat": 1.0} and doc["hits"][1]["row"] == 7
    with pytest.raises(InputError, match="unsupported"):
        write_hits(tmp_path / "hits.txt", hits)


def test_exports_get_the_umask_mode_and_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import os
    import stat

    _, a, _ = _maps(mercator_chip())
    old = os.umask(0o022)
    try:
        tif = write_geotiff(tmp_path / "m.tif", [a])
        wav, side = write_audio(tmp_path / "c.wav", np.zeros(160), 16000, {"caption": "quiet"})
        hits = write_hits(tmp_path / "h.csv", [Hit(1, 0.9, "wind", 4, True, 1)])
        from sat2sound_core.export import write_png

        png = write_png(tmp_path / "m.png", a, size=16)
    finally:
        os.umask(old)
    for path in (tif, wav, side, hits, png):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # not mkstemp's 0600
    before = sorted(p.name for p in tmp_path.iterdir())

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InputError, match="No space left"):
        write_geotiff(tmp_path / "late.tif", [a])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file, no temp file


def test_geotiff_comes_from_the_one_raster_writer(monkeypatch) -> None:
    import tiles.geotiff

    calls = []
    real = tiles.geotiff.write_raster

    def spy(*args, **kwargs):
        calls.append(kwargs.get("driver"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tiles.geotiff, "write_raster", spy)
    _, a, _ = _maps(mercator_chip())
    geotiff_bytes([a])
    assert calls == ["COG"]
