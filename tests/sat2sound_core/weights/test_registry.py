"""The checkpoint registry and source resolution (name, hf-hub:, local path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sat2sound_core.common.errors import ConfigError
from sat2sound_core.model.config import ALLOWED_SCALES, METADATA_TYPES, SAT_TYPES
from sat2sound_core.weights.registry import (
    CHECKPOINTS,
    GALLERY,
    HF_REPO,
    get_checkpoint,
    list_checkpoints,
    resolve_source,
)
from tests.conftest import reference_file

NAMES = ["bingmap_withmeta", "bingmap_nometa", "sentinel_withmeta", "sentinel_nometa",
         "SoundingEarth_withmeta", "SoundingEarth_nometa"]


def test_six_official_checkpoints_are_listed() -> None:
    infos = list_checkpoints()
    assert [c.name for c in infos] == NAMES
    for c in infos:
        assert c.repo_id == HF_REPO == "MVRL/sat2sound"
        assert c.filename == f"sat2sound/{c.name}.ckpt"
        assert c.sat_type in SAT_TYPES and c.metadata_type in METADATA_TYPES
        assert c.description and c.approx_bytes and 5e8 < c.approx_bytes < 8e8
        assert c.has_metadata == c.name.endswith("withmeta")
        assert ALLOWED_SCALES[c.sat_type]
    assert GALLERY.filename == "demo/GeoSound_gallery_w_bingmap.h5" and GALLERY.repo_id == HF_REPO


@pytest.mark.parametrize("name", NAMES)
def test_registry_agrees_with_the_manifests(sat2sound_reference: Path, name: str) -> None:
    manifest = json.loads(reference_file(sat2sound_reference, f"manifest_{name}.json").read_text())
    info = get_checkpoint(name)
    assert info.sat_type == manifest["hyper_parameters"]["sat_type"]
    assert info.metadata_type == manifest["hyper_parameters"]["metadata_type"]
    fp32_bytes = 4 * manifest["total_state_dict_elements"]
    assert abs(info.approx_bytes - fp32_bytes) < 0.01 * fp32_bytes


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_source("bingmap")
    for name in NAMES:
        assert name in str(info.value)
    assert "hf-hub:" in str(info.value)
    assert get_checkpoint("BINGMAP_WITHMETA").name == "bingmap_withmeta"


def test_names_hub_references_and_paths_resolve(tmp_path: Path) -> None:
    r = resolve_source("sentinel_nometa")
    assert (r.kind, r.repo_id, r.filename, r.info) == ("registry", HF_REPO, "sat2sound/sentinel_nometa.ckpt",
                                                       CHECKPOINTS["sentinel_nometa"])
    assert resolve_source("sentinel_nometa", hf_repo="me/mirror").repo_id == "me/mirror"
    h = resolve_source("hf-hub:MVRL/sat2sound/sat2sound/bingmap_withmeta.ckpt")
    assert (h.kind, h.repo_id, h.filename) == ("hub", "MVRL/sat2sound", "sat2sound/bingmap_withmeta.ckpt")
    assert h.info is CHECKPOINTS["bingmap_withmeta"]
    other = resolve_source("hf-hub:someone/else/weights/model.ckpt")
    assert other.info is None and other.filename == "weights/model.ckpt"
    f = tmp_path / "SoundingEarth_withmeta.safetensors"
    f.write_bytes(b"x")
    local = resolve_source(f)
    assert local.kind == "local" and local.path == f.resolve() and local.info is CHECKPOINTS["SoundingEarth_withmeta"]
    assert resolve_source(str(f)).path == f.resolve()


@pytest.mark.parametrize("bad", ["", "  ", "hf-hub:onlyorg", "hf-hub:org/repo", "/no/such/file.ckpt", "missing.safetensors",
                                 "./dir/"])
def test_bad_sources_are_explained(bad: str) -> None:
    with pytest.raises(ConfigError):
        resolve_source(bad)


def test_a_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        resolve_source(tmp_path)
