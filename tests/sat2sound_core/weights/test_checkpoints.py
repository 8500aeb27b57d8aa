"""Checkpoint files: safe unpickling, corrupt/foreign files, config inference, the safetensors cache."""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sat2sound_core.common.errors import WeightsError
from sat2sound_core.weights import checkpoints as ck
from sat2sound_core.weights.registry import get_checkpoint
from tests.conftest import reference_file

MANIFESTS = [
    "bingmap_withmeta", "bingmap_nometa", "sentinel_withmeta", "sentinel_nometa",
    "SoundingEarth_withmeta", "SoundingEarth_nometa",
]


def _tiny_official_state() -> dict[str, torch.Tensor]:
    """A few tensors under the official prefixes (enough for the file-level checks)."""
    return {
        "fdt.space_dict": torch.randn(8, 4),
        "satmae_backbone.backbone.patch_embed.proj.weight": torch.randn(2, 3, 1, 1),
        "satmae_backbone.projector.linear2.weight": torch.randn(4, 4),
        "audio_encoder.model.audio_enc.bn0.weight": torch.randn(4),
    }


@pytest.fixture()
def fake_lightning() -> Iterator[type]:
    """Make ``pytorch_lightning.utilities.parsing.AttributeDict`` importable while saving only."""
    names = ["pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"]
    mods = {n: types.ModuleType(n) for n in names}

    class AttributeDict(dict):
        def __getstate__(self) -> dict:  # as older Pythons pickled it: an (empty) __dict__ state
            return {}

    AttributeDict.__module__ = "pytorch_lightning.utilities.parsing"
    AttributeDict.__qualname__ = "AttributeDict"
    mods["pytorch_lightning.utilities.parsing"].AttributeDict = AttributeDict  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        yield AttributeDict
    finally:
        for n in names:
            sys.modules.pop(n, None)


# ----------------------------------------------------------------------------- safe unpickling
def test_lightning_hyper_parameters_load_as_plain_dicts(tmp_path: Path, fake_lightning: type) -> None:
    hp = fake_lightning(sat_type="sentinel", metadata_type="none", nested=argparse.Namespace(a=1),
                        path=Path("ckpts/x.pth"))
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": _tiny_official_state(), "hyper_parameters": hp, "epoch": 3}, path)
    for name in list(sys.modules):  # lightning is not installed when we read it
        if name.startswith("pytorch_lightning"):
            sys.modules.pop(name)
    obj = ck.safe_torch_load(path)
    assert type(obj["hyper_parameters"]) is dict
    assert obj["hyper_parameters"]["sat_type"] == "sentinel"
    assert obj["hyper_parameters"]["nested"] == {"a": 1}
    assert obj["hyper_parameters"]["path"] == os.path.join("ckpts", "x.pth")
    official = ck.read_official_checkpoint(path)
    assert set(official.state_dict) == set(_tiny_official_state())
    assert official.hyper_parameters["metadata_type"] == "none"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _tiny_official_state(), "hyper_parameters": _Evil(marker)}, path)
    with pytest.raises(WeightsError, match="Refused to load") as info:
        ck.read_official_checkpoint(path)
    assert "system" in str(info.value)  # names what it asked for
    assert not marker.exists()


def test_unknown_classes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": _tiny_official_state(), "extra": argparse.ArgumentParser}, path)
    with pytest.raises(WeightsError, match="ArgumentParser"):
        ck.safe_torch_load(path)


def test_truncated_empty_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "full.ckpt"
    torch.save({"state_dict": _tiny_official_state()}, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        ck.read_official_checkpoint(cut)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        ck.read_official_checkpoint(empty)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match="truncated or corrupt|Refused"):
        ck.read_official_checkpoint(garbage)
    with pytest.raises(WeightsError, match="does not exist"):
        ck.read_official_checkpoint(tmp_path / "nope.ckpt")


def test_other_models_are_not_taken_for_sat2sound(tmp_path: Path) -> None:
    other = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}}, other)
    with pytest.raises(WeightsError, match="not a Sat2Sound checkpoint"):
        ck.read_official_checkpoint(other)
    backbone = tmp_path / "satmae.pth"
    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(2)}}, backbone)
    with pytest.raises(WeightsError, match="backbone"):
        ck.read_official_checkpoint(backbone)
    plain = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], plain)
    with pytest.raises(WeightsError, match="not a checkpoint dict"):
        ck.read_official_checkpoint(plain)


# ----------------------------------------------------------------------------- config inference
@pytest.mark.parametrize("config", MANIFESTS)
def test_metadata_type_follows_from_the_keys_of_every_official_config(sat2sound_reference: Path, config: str) -> None:
    manifest = json.loads(reference_file(sat2sound_reference, f"manifest_{config}.json").read_text())
    keys = [e["key"] for e in manifest["keys"]]
    assert ck.metadata_type_from_keys(keys) == manifest["hyper_parameters"]["metadata_type"]
    assert ck._looks_like_sat2sound(keys)


def test_infer_config_from_hyper_parameters_registry_or_run_name(tmp_path: Path) -> None:
    sd = _tiny_official_state()
    with_hp = ck.OfficialCheckpoint(tmp_path / "x.ckpt", sd, {"sat_type": "sentinel", "metadata_type": "none"})
    fields = ck.infer_config_fields(with_hp)
    assert fields == {"name": "x", "sat_type": "sentinel", "metadata_type": "none", "codebook_size": 8,
                      "codebook_dim": 4, "fc_dim": 4}
    by_run = ck.OfficialCheckpoint(tmp_path / "y.ckpt", sd, {"run_name": "SoundingEarth_nometa"})
    assert ck.infer_config_fields(by_run)["sat_type"] == "googleEarth"
    assert ck.infer_config_fields(by_run)["name"] == "SoundingEarth_nometa"
    bare = ck.OfficialCheckpoint(tmp_path / "z.ckpt", sd, {})
    assert ck.infer_config_fields(bare, get_checkpoint("bingmap_nometa"))["sat_type"] == "bingmap"
    with pytest.raises(WeightsError, match="sat_type"):
        ck.infer_config_fields(bare)


def test_weights_win_over_contradicting_hyper_parameters(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hp = {"sat_type": "bingmap", "metadata_type": "latlong_month_time_asource_tsource"}
    fields = ck.infer_config_fields(ck.OfficialCheckpoint(tmp_path / "a.ckpt", _tiny_official_state(), hp))
    assert fields["metadata_type"] == "none"
    assert "using the weights" in caplog.text


# ----------------------------------------------------------------------------- safetensors cache
def test_converted_copy_round_trips_with_metadata(tmp_path: Path) -> None:
    sd = {"a.weight": torch.randn(3, 4), "b.idx": torch.arange(5)}
    target = tmp_path / "cache" / "m.safetensors"
    ck.save_converted(target, sd, {"name": "m", "htsat_depths": (2, 2)}, "ab" * 32, "/src/m.ckpt")
    assert ck.is_safetensors(target)
    assert [p.name for p in target.parent.iterdir()] == ["m.safetensors"]  # no temp file left
    conv = ck.read_converted(target)
    assert conv.config == {"name": "m", "htsat_depths": [2, 2]}
    assert conv.source_sha256 == "ab" * 32 and conv.source == "/src/m.ckpt"
    assert all(torch.equal(conv.state_dict[k], sd[k]) for k in sd)


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def boom(*args: object, **kwargs: object) -> None:
        Path(args[1]).write_bytes(b"partial")  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    target = tmp_path / "m.safetensors"
    with pytest.raises(OSError, match="disk full"):
        ck.save_converted(target, {"a": torch.zeros(1)}, {}, "", "")
    assert list(tmp_path.iterdir()) == []


def test_foreign_or_broken_safetensors_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="not a converted Sat2Sound checkpoint"):
        ck.read_converted(foreign)
    good = tmp_path / "good.safetensors"
    ck.save_converted(good, {"x": torch.zeros(1000)}, {"name": "g"}, "", "")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        ck.read_converted(broken)


def test_cache_name_follows_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    a.write_bytes(b"x" * 100)
    b.write_bytes(b"x" * 100)
    cache = tmp_path / "c"
    assert ck.converted_cache_path(a, cache).name.split("-")[1] == ck.converted_cache_path(b, cache).name.split("-")[1]
    b.write_bytes(b"x" * 99 + b"y")
    assert ck.converted_cache_path(a, cache).name.split("-")[1] != ck.converted_cache_path(b, cache).name.split("-")[1]
    assert ck.sha256_file(a) == __import__("hashlib").sha256(b"x" * 100).hexdigest()


def test_lightning_bookkeeping_with_numpy_and_defaultdicts_loads(tmp_path: Path) -> None:
    import collections

    import numpy as np

    path = tmp_path / "full.ckpt"
    torch.save({
        "state_dict": _tiny_official_state(),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 3}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {
            "best_model_score": torch.tensor(0.25), "best_k_models": collections.defaultdict(float, {"a.ckpt": 0.25}),
            "kth_value": np.float64(0.25), "history": np.array([0.5, 0.25]),
        }},
        "hyper_parameters": {"sat_type": "bingmap", "seed": np.int64(7)},
    }, path)
    obj = ck.safe_torch_load(path)
    cb = obj["callbacks"]["ModelCheckpoint{'monitor': 'val_loss'}"]
    assert cb["best_k_models"] == {"a.ckpt": 0.25} and cb["kth_value"] == 0.25
    assert np.array_equal(cb["history"], [0.5, 0.25]) and obj["hyper_parameters"]["seed"] == 7
    # code hidden inside a numpy object array is still refused
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil_np.ckpt"
    torch.save({"state_dict": _tiny_official_state(), "x": np.array([_Evil(marker)], dtype=object)}, evil)
    with pytest.raises(WeightsError, match="Refused"):
        ck.safe_torch_load(evil)
    assert not marker.exists()


def test_a_wrapper_prefix_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _tiny_official_state().items()}}, path)
    assert set(ck.read_official_checkpoint(path).state_dict) == set(_tiny_official_state())
