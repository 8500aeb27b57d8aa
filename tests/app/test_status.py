"""The weights panel reports what is on disk from the weights inventory (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import status


def test_items_report_present_and_missing(product_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sat2sound_core.common.settings import get_settings

    weights = tmp_path / "weights"
    (weights / "sat2sound").mkdir(parents=True)
    (weights / "sat2sound" / "bingmap_withmeta.ckpt").write_bytes(b"x")
    tango = tmp_path / "tango"
    tango.mkdir()
    monkeypatch.setenv("SAT2SOUND_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("SAT2SOUND_TANGOFLUX", str(tango))
    get_settings.cache_clear()
    by_name = {i.name: i for i in status.items("bingmap_withmeta")}
    ckpt = by_name["checkpoint bingmap_withmeta"]
    assert ckpt.path == weights / "sat2sound" / "bingmap_withmeta.ckpt"
    assert ckpt.approx_bytes and ckpt.approx_bytes > 500e6
    assert by_name["retrieval gallery"].path is None and by_name["retrieval gallery"].download == "gallery"
    assert by_name["TangoFlux (non-commercial licence)"].path == tango
    t5 = by_name["FLAN-T5-large text encoder"]
    assert t5.path is None and t5.download == "t5"
    (weights / "flan-t5-large").mkdir()
    (weights / "flan-t5-large" / "encoder.safetensors").write_bytes(b"x")
    t5 = {i.name: i for i in status.items("bingmap_withmeta")}["FLAN-T5-large text encoder"]
    assert t5.path == weights / "flan-t5-large" / "encoder.safetensors"

    other = {i.name: i for i in status.items("sentinel_nometa")}["checkpoint sentinel_nometa"]
    assert other.path is None and other.download == "sentinel_nometa"
    local = status.items(str(weights / "sat2sound" / "bingmap_withmeta.ckpt"))[0]
    assert local.path is not None and local.download is None
