"""FLAN-T5 text path on the tiny reference T5: tokenizer, encoder sources, sharing, range download."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sat2sound_core.common.errors import DownloadError, InputError
from sat2sound_core.model import text
from sat2sound_core.model.text import (
    LazyTextEncoder,
    TextEncoder,
    download_encoder,
    is_flan_t5_large,
    load_text_encoder,
    load_tokenizer,
)
from sat2sound_core.weights import hub as t5_registry
from tests.conftest import reference_file
from tests.fixtures.mini_hub import MiniHub
from tests.fixtures.tiny_t5_tokenizer import build_tokenizer_folder

CAPTIONS = ["birds chirping near a river", "heavy traffic with car horns"]
ATOL = 1e-5


@pytest.fixture()
def tiny(tangoflux_reference: Path) -> Path:
    return tangoflux_reference / "tiny"


@pytest.fixture()
def golden_tiny(tangoflux_reference: Path) -> dict:
    return torch.load(reference_file(tangoflux_reference, "golden_tiny.pt"), weights_only=True)


@pytest.fixture()
def t5_dir(tmp_path: Path, tiny: Path, product_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Our T5 folder with only the (generated) tokenizer in it; no TangoFlux configured yet."""
    folder = build_tokenizer_folder(reference_file(tiny, "vocab.json"), tmp_path / "t5")
    monkeypatch.setenv(text.T5_DIR_ENV, str(folder))
    monkeypatch.setenv("SAT2SOUND_TANGOFLUX", str(tmp_path / "no-tangoflux"))
    _settings_changed()
    t5_registry.forget()
    yield folder
    t5_registry.forget()
    _settings_changed()


def _settings_changed() -> None:
    from sat2sound_core.common.settings import get_settings

    get_settings.cache_clear()


def _use_tangoflux(monkeypatch: pytest.MonkeyPatch, tiny: Path) -> None:
    monkeypatch.setenv("SAT2SOUND_TANGOFLUX", str(tiny))
    _settings_changed()


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_pads_truncates_and_appends_eos(t5_dir: Path, tiny: Path) -> None:
    ids = json.loads(reference_file(tiny, "vocab.json").read_text())["ids"]
    tok = load_tokenizer(t5_dir)
    assert tok.model_max_length == 512
    for caption, want in ids.items():
        assert tok(caption)["input_ids"] == want  # ends with </s> = 1
    batch = tok(CAPTIONS, padding=True, truncation=True, max_length=512)
    assert [len(r) for r in batch["input_ids"]] == [8, 8]
    assert batch["attention_mask"][1] == [1] * 6 + [0, 0]
    long = tok([" ".join(["birds"] * 700)], padding=True, truncation=True, max_length=512)
    assert len(long["input_ids"][0]) == 512 and long["input_ids"][0][-1] == 1


# ----------------------------------------------------------------------------- encoder sources
def test_tangoflux_copy_reproduces_the_official_t5_states(
    t5_dir: Path, tiny: Path, golden_tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_tangoflux(monkeypatch, tiny)
    enc = load_text_encoder("cpu", download=False)
    c0, c1 = golden_tiny["cases"]
    hidden, mask = enc.encode(CAPTIONS)
    assert hidden.dtype == torch.float32 and mask.dtype == torch.bool and hidden.shape == (2, 8, 32)
    assert mask.tolist() == [[True] * 8, [True] * 6 + [False] * 2]
    assert torch.allclose(hidden[0], c0["t5_hidden_cond"][0], atol=ATOL)
    assert torch.allclose(hidden[1, :6], c1["t5_hidden_cond"][0], atol=ATOL)
    # the empty caption is just </s>, padded: TangoFlux's unconditional states, pads included
    uncond, umask = enc.encode(["", CAPTIONS[0]])
    assert umask[0].tolist() == [True] + [False] * 7
    assert torch.allclose(uncond[0], c0["t5_hidden_uncond"][0], atol=ATOL)


def test_one_encoder_per_process_and_per_weights(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_tangoflux(monkeypatch, tiny)
    a = load_text_encoder("cpu", download=False)
    b = load_text_encoder("cpu", download=False)
    assert a.model is b.model
    key = f"t5|{(tiny / 'tangoflux.safetensors').resolve()}|cpu|torch.float32"
    assert t5_registry.peek(key) is a.model
    assert not a.model.training and not any(p.requires_grad for p in a.model.parameters())
    flan = {"d_model": 1024, "num_layers": 24, "vocab_size": 32128, "d_ff": 2816}
    assert is_flan_t5_large(flan) and not is_flan_t5_large({**flan, "d_model": 32})


def test_real_flan_config_uses_the_key_tangoflux_uses(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_shared(key: str, build: Any) -> Any:
        seen.append(key)
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(t5_registry, "shared_encoder", fake_shared)
    monkeypatch.setattr(text, "_read_config", lambda w, c: {"d_model": 1024, "num_layers": 24, "vocab_size": 32128})
    _use_tangoflux(monkeypatch, tiny)
    load_text_encoder("cpu", download=False)
    assert seen == ["flan-t5-large|cpu|torch.float32"]


def test_a_full_t5_file_in_our_folder_is_used_first(
    t5_dir: Path, tiny: Path, golden_tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(tiny / "tiny_t5" / "model.safetensors", t5_dir / "model.safetensors")
    shutil.copy(tiny / "tiny_t5" / "config.json", t5_dir / "config.json")
    _use_tangoflux(monkeypatch, tiny)  # present, but our folder wins
    weights, config_file = text.locate_encoder_weights(download=False)
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
        text.build_t5_encoder(config, text.EncoderWeights(tmp_path / "wrong.safetensors", "", "full"))
    del bad[layer_norm]
    save_file(bad, tmp_path / "short.safetensors")
    with pytest.raises(WeightsError, match=rf"1 missing key\(s\): {layer_norm}\. Delete it"):
        text.build_t5_encoder(config, text.EncoderWeights(tmp_path / "short.safetensors", "", "full"))


def test_offline_without_weights_names_what_is_missing(t5_dir: Path) -> None:
    with pytest.raises(DownloadError, match="offline") as info:
        load_text_encoder("cpu")
    assert str(t5_dir) in str(info.value) and "GB" in str(info.value)


def test_lazy_encoder_builds_once_on_first_use(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_tangoflux(monkeypatch, tiny)
    calls: list[torch.device] = []

    def loader(dev: torch.device) -> TextEncoder:
        calls.append(dev)
        return load_text_encoder(dev, download=False)

    lazy = LazyTextEncoder("cpu", loader=loader)
    assert not lazy.loaded and calls == []
    h1, _ = lazy.encode(CAPTIONS)
    h2, _ = lazy.encode(CAPTIONS)
    assert calls == [torch.device("cpu")] and lazy.loaded and torch.equal(h1, h2)
    with pytest.raises(InputError):
        lazy.encode([])
    with pytest.raises(InputError):
        lazy.encode([3])  # type: ignore[list-item]


def test_sat2sound_encode_text_runs_the_attached_encoder(t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound

    _use_tangoflux(monkeypatch, tiny)
    torch.manual_seed(0)
    model = Sat2Sound(ModelConfig.tiny(text_dim=32))
    enc = load_text_encoder("cpu", download=False)
    model.text_encoder = enc
    hidden, mask = enc.encode(CAPTIONS)
    via_text = model.encode_text(CAPTIONS)
    via_states = model.encode_text_states(hidden, mask)
    assert torch.equal(via_text.embedding, via_states.embedding)


# ----------------------------------------------------------------------------- range download
def _full_t5_file(tiny: Path, out: Path) -> dict[str, torch.Tensor]:
    """A tiny 'flan-t5' model.safetensors: the encoder plus decoder and lm_head tensors we must not fetch."""
    with safe_open(str(tiny / "tiny_t5" / "model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        tensors[f"decoder.block.{i}.layer.0.SelfAttention.q.weight"] = torch.randn(32, 32, generator=g)
        tensors[f"decoder.block.{i}.layer.2.DenseReluDense.wo.weight"] = torch.randn(32, 64, generator=g)
    tensors["lm_head.weight"] = torch.randn(64, 32, generator=g)
    save_file(tensors, str(out), metadata={"format": "pt"})
    return tensors


@pytest.fixture()
def hub(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MiniHub, dict]]:
    import huggingface_hub.constants as hc

    full = tmp_path / "full.safetensors"
    tensors = _full_t5_file(tiny, full)
    server = MiniHub().start()
    server.add(text.FLAN_T5_REPO, "model.safetensors", full.read_bytes())
    server.add(text.FLAN_T5_REPO, "config.json", (tiny / "tiny_t5" / "config.json").read_bytes())
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _settings_changed()
    yield server, tensors
    server.stop()


def _data_gets(server: MiniHub) -> list[tuple[int, int]]:
    spans = []
    for r in server.gets("model.safetensors"):
        assert r.range is not None, "a GET without a Range header would fetch the whole file"
        a, b = r.range.removeprefix("bytes=").split("-")
        spans.append((int(a), int(b)))
    return spans


def test_only_the_encoder_bytes_are_downloaded(t5_dir: Path, hub: tuple[MiniHub, dict], golden_tiny: dict) -> None:
    server, tensors = hub
    path = download_encoder(t5_dir)
    assert path == t5_dir / text.ENCODER_FILE
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
        assert all(torch.equal(f.get_tensor(k), tensors[k]) for k in keys)
    assert keys == {k for k in tensors if k.startswith("encoder.") or k == "shared.weight"}
    assert meta["format"] == text.ENCODER_FORMAT and json.loads(meta["config"])["d_model"] == 32
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
    monkeypatch.setattr(t5_registry, "_CHUNK", 1024)


def test_an_interrupted_download_resumes_where_it_stopped(
    t5_dir: Path, hub: tuple[MiniHub, dict], small_chunks: None
) -> None:
    server, tensors = hub
    server.fail_after = 3000  # the first tensor-data transfer breaks off after 3000 bytes
    path = download_encoder(t5_dir)
    spans = _data_gets(server)
    data = spans[2:]
    assert len(data) >= 2
    assert data[0][0] < data[1][0] <= data[0][0] + 3000  # continued, not restarted
    assert data[1][1] == data[0][1]
    with safe_open(str(path), framework="pt") as f:
        assert all(torch.equal(f.get_tensor(k), tensors[k]) for k in f.keys())  # noqa: SIM118


def test_resume_across_runs_and_ignored_ranges(t5_dir: Path, hub: tuple[MiniHub, dict], small_chunks: None) -> None:
    from sat2sound_core.weights.hub import download_safetensors_subset

    server, tensors = hub
    url = f"{server.endpoint}/{text.FLAN_T5_REPO}/resolve/main/model.safetensors"
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


def test_a_flan_shaped_tangoflux_copy_needs_no_config_download(tmp_path: Path, product_home: Path) -> None:
    # only shapes are read: a flan-t5-large-shaped embedding (int8 to keep the file small) and 24 blocks
    tensors = {"text_encoder.shared.weight": torch.zeros(32128, 1024, dtype=torch.int8)}
    for i in range(24):
        tensors[f"text_encoder.encoder.block.{i}.layer.0.layer_norm.weight"] = torch.zeros(1)
    path = tmp_path / "tangoflux.safetensors"
    save_file(tensors, str(path))
    config = text._read_config(text.EncoderWeights(path, "text_encoder.", "tangoflux"), None)
    assert config == text.FLAN_T5_LARGE_CONFIG and is_flan_t5_large(config)
    path.unlink()  # 32 MB


def test_load_model_attaches_an_encoder_that_finds_the_weights_on_first_use(
    t5_dir: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses

    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound
    from sat2sound_core.weights import checkpoints as ck
    from sat2sound_core.weights.loading import clear_model_cache, load_model

    _use_tangoflux(monkeypatch, tiny)
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


def test_tokenizer_files_come_from_the_hub_when_not_local(
    t5_dir: Path, hub: tuple[MiniHub, dict], tmp_path: Path
) -> None:
    server, _ = hub
    for name in ("tokenizer.json", "tokenizer_config.json"):
        server.add(text.FLAN_T5_REPO, name, (t5_dir / name).read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    tok = load_tokenizer(empty)
    assert tok(CAPTIONS[0])["input_ids"] == [3, 4, 5, 6, 7, 8, 9, 1]
    assert {r.path.rsplit("/", 1)[-1] for r in server.gets("tokenizer.json")} == {"tokenizer.json"}
