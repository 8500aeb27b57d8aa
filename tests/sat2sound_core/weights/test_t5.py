"""The FLAN-T5 encoder's weights: where they are found, one encoder per process, strict building,
offline messages, and the encoder-only range download from a loopback Hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sat2sound_core.common import shared
from sat2sound_core.common.errors import DownloadError
from sat2sound_core.model.text import LazyTextEncoder
from sat2sound_core.weights import hub, t5
from sat2sound_core.weights.registry import FLAN_T5_REPO
from sat2sound_core.weights.t5 import download_encoder, is_flan_t5_large, load_text_encoder
from tests.fixtures.mini_hub import MiniHub
from tests.fixtures.t5_folder import ATOL, CAPTIONS, golden_tiny, t5_dir, t5_hub, tiny, use_tangoflux

__all__ = ["golden_tiny", "t5_dir", "t5_hub", "tiny"]  # fixtures


# ----------------------------------------------------------------------------- encoder sources
def test_one_encoder_per_process_and_per_weights(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_tangoflux(monkeypatch, tiny)
    a = load_text_encoder("cpu", download=False)
    b = load_text_encoder("cpu", download=False)
    assert a.model is b.model
    key = f"t5|{(tiny / 'tangoflux.safetensors').resolve()}|cpu|torch.float32"
    assert shared.peek(key) is a.model
    assert not a.model.training and not any(p.requires_grad for p in a.model.parameters())
    flan = {"d_model": 1024, "num_layers": 24, "vocab_size": 32128, "d_ff": 2816}
    assert is_flan_t5_large(flan) and not is_flan_t5_large({**flan, "d_model": 32})


def test_real_flan_config_uses_the_key_tangoflux_uses(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_shared(key: str, build: Any) -> Any:
        seen.append(key)
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(t5, "shared", fake_shared)
    monkeypatch.setattr(t5, "_read_config", lambda w, c: {"d_model": 1024, "num_layers": 24, "vocab_size": 32128})
    use_tangoflux(monkeypatch, tiny)
    load_text_encoder("cpu", download=False)
    assert seen == ["flan-t5-large|cpu|torch.float32"]


def test_a_full_t5_file_in_our_folder_is_used_first(
    t5_dir: Path, tiny: Path, golden_tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(tiny / "tiny_t5" / "model.safetensors", t5_dir / "model.safetensors")
    shutil.copy(tiny / "tiny_t5" / "config.json", t5_dir / "config.json")
    use_tangoflux(monkeypatch, tiny)  # present, but our folder wins
    weights, config_file = t5.locate_encoder_weights(download=False)
    assert weights.kind == "full" and weights.prefix == "" and config_file == t5_dir / "config.json"
    hidden, _ = load_text_encoder("cpu", download=False).encode(CAPTIONS[:1])
    assert torch.allclose(hidden[0], golden_tiny["cases"][0]["t5_hidden_cond"][0], atol=ATOL)


def test_a_t5_file_with_a_wrong_or_missing_tensor_is_refused(tmp_path: Path, tiny: Path) -> None:
    from safetensors.torch import load_file

    from sat2sound_core.common.errors import WeightsError

    config = json.loads((tiny / "tiny_t5" / "config.json").read_text())
    state = load_file(tiny / "tiny_t5" / "model.safetensors")
    layer_norm = next(k for k in state if k.startswith("encoder.final_layer_norm"))
    bad = dict(state)
    bad[layer_norm] = torch.zeros(3)
    save_file(bad, tmp_path / "wrong.safetensors")
    with pytest.raises(WeightsError, match=rf"1 shape mismatch\(es\): {layer_norm}: file \(3,\) vs model"):
        t5.build_t5_encoder(config, t5.EncoderWeights(tmp_path / "wrong.safetensors", "", "full"))
    del bad[layer_norm]
    save_file(bad, tmp_path / "short.safetensors")
    with pytest.raises(WeightsError, match=rf"1 missing key\(s\): {layer_norm}\. Delete it"):
        t5.build_t5_encoder(config, t5.EncoderWeights(tmp_path / "short.safetensors", "", "full"))


def test_offline_without_weights_names_what_is_missing(t5_dir: Path) -> None:
    with pytest.raises(DownloadError, match="offline") as info:
        load_text_encoder("cpu")
    assert str(t5_dir) in str(info.value) and "GB" in str(info.value)


def test_a_flan_shaped_tangoflux_copy_needs_no_config_download(tmp_path: Path, product_home: Path) -> None:
    # only shapes are read: a flan-t5-large-shaped embedding (int8 to keep the file small) and 24 blocks
    tensors = {"text_encoder.shared.weight": torch.zeros(32128, 1024, dtype=torch.int8)}
    for i in range(24):
        tensors[f"text_encoder.encoder.block.{i}.layer.0.layer_norm.weight"] = torch.zeros(1)
    path = tmp_path / "tangoflux.safetensors"
    save_file(tensors, str(path))
    config = t5._read_config(t5.EncoderWeights(path, "text_encoder.", "tangoflux"), None)
    assert config == t5.FLAN_T5_LARGE_CONFIG and is_flan_t5_large(config)
    path.unlink()  # 32 MB


def test_load_model_attaches_an_encoder_that_finds_the_weights_on_first_use(
    t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses

    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound
    from sat2sound_core.weights import checkpoints as ck
    from sat2sound_core.weights.loading import clear_model_cache, load_model

    use_tangoflux(monkeypatch, tiny)
    torch.manual_seed(0)
    source = Sat2Sound(ModelConfig.tiny(text_dim=32))
    path = ck.save_converted(tmp_path / "m.safetensors", source.state_dict(), dataclasses.asdict(source.config), "", "")
    clear_model_cache()
    try:
        model = load_model(path)
        assert isinstance(model.text_encoder, LazyTextEncoder) and not model.text_encoder.loaded
        enc = model.encode_text(CAPTIONS)
        assert model.text_encoder.loaded
        hidden, mask = load_text_encoder("cpu", download=False).encode(CAPTIONS)
        assert torch.equal(enc.embedding, source.encode_text_states(hidden, mask).embedding)
    finally:
        clear_model_cache()


# ----------------------------------------------------------------------------- range download
def _data_gets(server: MiniHub) -> list[tuple[int, int]]:
    spans = []
    for r in server.gets("model.safetensors"):
        assert r.range is not None, "a GET without a Range header would fetch the whole file"
        a, b = r.range.removeprefix("bytes=").split("-")
        spans.append((int(a), int(b)))
    return spans


def test_only_the_encoder_bytes_are_downloaded(t5_dir: Path, t5_hub: tuple[MiniHub, dict], golden_tiny: dict) -> None:
    server, tensors = t5_hub
    path = download_encoder(t5_dir)
    assert path == t5_dir / t5.ENCODER_FILE
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
        assert all(torch.equal(f.get_tensor(k), tensors[k]) for k in keys)
    assert keys == {k for k in tensors if k.startswith("encoder.") or k == "shared.weight"}
    assert meta["format"] == t5.ENCODER_FORMAT and json.loads(meta["config"])["d_model"] == 32
    encoder_bytes = sum(t.numel() * t.element_size() for k, t in tensors.items() if k in keys)
    spans = _data_gets(server)
    fetched = sum(b - a + 1 for a, b in spans)
    header = spans[1][1] + 1  # 8 + header length
    assert fetched == header + encoder_bytes  # no decoder / lm_head byte crossed the wire
    assert all(r.authorization == "Bearer hf_test_token" for r in server.gets("model.safetensors"))
    assert not list(t5_dir.glob("*.partial*"))
    # the product then builds its encoder from this file
    hidden, _ = load_text_encoder("cpu").encode(CAPTIONS[:1])
    assert torch.allclose(hidden[0], golden_tiny["cases"][0]["t5_hidden_cond"][0], atol=ATOL)


@pytest.fixture()
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes are written per received chunk; small chunks let a tiny broken transfer keep some."""
    monkeypatch.setattr(hub, "_CHUNK", 1024)


def test_an_interrupted_download_resumes_where_it_stopped(
    t5_dir: Path, t5_hub: tuple[MiniHub, dict], small_chunks: None
) -> None:
    server, tensors = t5_hub
    server.fail_after = 3000  # the first tensor-data transfer breaks off after 3000 bytes
    path = download_encoder(t5_dir)
    spans = _data_gets(server)
    data = spans[2:]
    assert len(data) >= 2
    assert data[0][0] < data[1][0] <= data[0][0] + 3000  # continued, not restarted
    assert data[1][1] == data[0][1]
    with safe_open(str(path), framework="pt") as f:
        assert all(torch.equal(f.get_tensor(k), tensors[k]) for k in f.keys())  # noqa: SIM118


def test_resume_across_runs_and_ignored_ranges(t5_dir: Path, t5_hub: tuple[MiniHub, dict], small_chunks: None) -> None:
    from sat2sound_core.weights.hub import download_safetensors_subset

    server, tensors = t5_hub
    url = f"{server.endpoint}/{FLAN_T5_REPO}/resolve/main/model.safetensors"
    target = t5_dir / "enc.safetensors"
    keep = lambda k: k.startswith("encoder.")  # noqa: E731
    server.fail_after = 4000  # longer than the header: the tensor data breaks off
    with pytest.raises(DownloadError, match="run again to resume"):
        download_safetensors_subset(url, target, keep, retries=1)
    partial = target.with_name(target.name + ".partial")
    assert partial.is_file() and not target.exists()
    first_start = _data_gets(server)[2][0]
    before = len(server.gets("model.safetensors"))
    download_safetensors_subset(url, target, keep)
    resumed_start = _data_gets(server)[before + 2][0]
    assert first_start < resumed_start <= first_start + 4000  # the kept bytes were not fetched again
    assert target.is_file() and not partial.exists()
    with safe_open(str(target), framework="pt") as f:
        assert set(f.keys()) == {k for k in tensors if k.startswith("encoder.")}
        assert all(torch.equal(f.get_tensor(k), tensors[k]) for k in f.keys())  # noqa: SIM118
    server.ignore_range = True
    with pytest.raises(DownloadError, match="ignored the byte-range request"):
        download_safetensors_subset(url, t5_dir / "other.safetensors", keep)
    server.ignore_range = False
    server.fail_after = 100  # even the header read breaks off: a clear error, not a traceback
    with pytest.raises(DownloadError, match="header"):
        download_safetensors_subset(url, t5_dir / "third.safetensors", keep)
