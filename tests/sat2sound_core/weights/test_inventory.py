"""The weights inventory: what is present or absent under a temporary SAT2SOUND_HOME, and that the CLI
and the app's panel both show it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sat2sound_core.common.errors import DownloadError
from sat2sound_core.common.settings import get_settings
from sat2sound_core.weights.inventory import WeightsItem, download, inventory
from sat2sound_core.weights.registry import CHECKPOINTS, TANGOFLUX_BYTES, TANGOFLUX_FILES


@pytest.fixture()
def home(product_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty product home (offline, an empty Hugging Face cache) whose TangoFlux source is a folder
    that does not exist yet."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("SAT2SOUND_WEIGHTS_DIR", "SAT2SOUND_T5_DIR", "SAT2SOUND_GALLERY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAT2SOUND_TANGOFLUX", str(tmp_path / "tangoflux"))
    get_settings.cache_clear()
    return product_home


def _by_name(items: list[WeightsItem]) -> dict[str, WeightsItem]:
    return {i.name: i for i in items}


def test_an_empty_home_has_everything_absent(home: Path) -> None:
    items = inventory()
    assert [i.kind for i in items] == ["checkpoint"] * 6 + ["text encoder", "gallery", "synthesis"]
    assert [i.name for i in items[:6]] == list(CHECKPOINTS)
    assert all(not i.present and i.path is None for i in items)
    assert all(i.download is not None and i.licence for i in items)
    ckpt = _by_name(items)["bingmap_withmeta"]
    assert ckpt.approx_bytes == CHECKPOINTS["bingmap_withmeta"].approx_bytes and ckpt.size_text == "≈669 MB"
    assert ckpt.source == "MVRL/sat2sound: sat2sound/bingmap_withmeta.ckpt" and ckpt.download == "bingmap_withmeta"
    tango = _by_name(items)["TangoFlux"]
    assert tango.approx_bytes == TANGOFLUX_BYTES == sum(TANGOFLUX_FILES.values()) and tango.size_text == "≈4.06 GB"
    assert "non-commercial" in tango.licence
    encoder = _by_name(items)["FLAN-T5-large text encoder"]
    assert encoder.approx_bytes and encoder.approx_bytes > 1e9 and "google/flan-t5-large" in encoder.source
    assert _by_name(items)["demo gallery"].source.endswith("demo/GeoSound_gallery_w_bingmap.h5")


def test_files_in_the_weights_folder_are_found(home: Path, tmp_path: Path) -> None:
    weights = home / "weights"
    (weights / "sat2sound").mkdir(parents=True)
    (weights / "sat2sound" / "bingmap_withmeta.ckpt").write_bytes(b"x")  # at its path in the repo
    (weights / "sentinel_nometa.ckpt").write_bytes(b"x")  # or flat
    (weights / "demo").mkdir()
    (weights / "demo" / "GeoSound_gallery_w_bingmap.h5").write_bytes(b"x")
    (weights / "flan-t5-large").mkdir()
    (weights / "flan-t5-large" / "encoder.safetensors").write_bytes(b"x")
    (tmp_path / "tangoflux").mkdir()
    items = _by_name(inventory())
    assert items["bingmap_withmeta"].path == weights / "sat2sound" / "bingmap_withmeta.ckpt"
    assert items["sentinel_nometa"].path == weights / "sentinel_nometa.ckpt"
    assert items["bingmap_nometa"].path is None
    assert items["demo gallery"].path == weights / "demo" / "GeoSound_gallery_w_bingmap.h5"
    assert items["FLAN-T5-large text encoder"].path == weights / "flan-t5-large" / "encoder.safetensors"
    assert items["TangoFlux"].path == tmp_path / "tangoflux"


def test_the_encoder_inside_local_tangoflux_counts(home: Path, tmp_path: Path) -> None:
    (tmp_path / "tangoflux").mkdir()
    (tmp_path / "tangoflux" / "tangoflux.safetensors").write_bytes(b"x")
    items = _by_name(inventory())
    assert items["FLAN-T5-large text encoder"].path == tmp_path / "tangoflux" / "tangoflux.safetensors"


def test_a_configured_gallery_and_a_checkpoint_path(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine.h5"
    monkeypatch.setenv("SAT2SOUND_GALLERY", str(mine))
    get_settings.cache_clear()
    gallery = next(i for i in inventory([]) if i.kind == "gallery")
    assert gallery.path is None and gallery.download is None  # named but missing: cannot be downloaded
    mine.write_bytes(b"x")
    gallery = next(i for i in inventory([]) if i.kind == "gallery")
    assert gallery.path == mine and str(mine) in gallery.source
    monkeypatch.setenv("SAT2SOUND_GALLERY", "official")
    get_settings.cache_clear()
    assert next(i for i in inventory([]) if i.kind == "gallery").download == "gallery"

    ckpt = tmp_path / "my.ckpt"
    (item,) = [i for i in inventory([str(ckpt)]) if i.kind == "checkpoint"]
    assert item.path is None and item.download is None and item.name == "my.ckpt"
    ckpt.write_bytes(b"x")
    (item,) = [i for i in inventory([str(ckpt)]) if i.kind == "checkpoint"]
    assert item.path == ckpt


@pytest.mark.parametrize("key", ["bingmap_nometa", "gallery", "t5", "tangoflux"])
def test_offline_downloads_say_what_is_missing(
    home: Path, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAT2SOUND_TANGOFLUX", "declare-lab/TangoFlux")
    get_settings.cache_clear()
    with pytest.raises(DownloadError, match="offline|downloads are off"):
        download(key)


def test_the_cli_and_the_app_panel_show_the_inventory(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app import status
    from sat2sound_core.cli import main

    (home / "weights" / "sat2sound").mkdir(parents=True)
    (home / "weights" / "sat2sound" / "bingmap_withmeta.ckpt").write_bytes(b"x")
    assert main(["--quiet", "weights", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    for item in inventory():
        row = next(r for r in rows.values() if r.startswith(item.name))
        assert item.size_text in row and (" yes " if item.present else " no ") in row
    assert str(home / "weights" / "sat2sound" / "bingmap_withmeta.ckpt") in out and "non-commercial" in out
    panel = status.items("bingmap_withmeta")
    assert [i.entry for i in panel] == [i for i in inventory(["bingmap_withmeta"])]
