"""load_model on tiny models: official-layout and converted files, key checks, caches, precision, device."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

import sat2sound_core
from sat2sound_core.common import devices
from sat2sound_core.common.devices import bf16_flags_in, resolve_device, resolve_precision
from sat2sound_core.common.errors import ConfigError, DownloadError, WeightsError
from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.sat2sound import Sat2Sound
from sat2sound_core.model.text import LazyTextEncoder
from sat2sound_core.weights import checkpoints as ck
from sat2sound_core.weights import loading
from sat2sound_core.weights.loading import (
    clear_model_cache,
    load_model,
)

DEAD = {  # official keys nothing reads (MODEL.md §2, §12): present in real checkpoints
    "logit_scale_it": torch.tensor(2.6592),
    "logit_scale_it_a": torch.tensor(2.6592),
    "audio_encoder.model.audio_enc.tscam_conv.weight": torch.zeros(5, 16, 2, 3),
    "audio_encoder.model.audio_enc.head.bias": torch.zeros(5),
    "audio_encoder.model.audio_enc.audio_feats_extractor.log_trans.melW": torch.zeros(513, 64),
}


@pytest.fixture(autouse=True)
def _fresh_cache(product_home: Path) -> Any:
    clear_model_cache()
    yield
    clear_model_cache()


def _tiny_model(metadata_type: str = "latlong_month_time_asource_tsource", seed: int = 0) -> Sat2Sound:
    torch.manual_seed(seed)
    model = Sat2Sound(ModelConfig.tiny(metadata_type=metadata_type, name="tiny_test"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.05 if "weight" in name else 0.02) + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model


def _official_state(model: Sat2Sound) -> dict[str, torch.Tensor]:
    """The tiny model's weights under the official keys (last block: full qkv, value rows last)."""
    sd = model.state_dict()
    prefix = model._last_block_prefix()
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith(prefix + "v_proj."):
            leaf = key[len(prefix + "v_proj."):]
            qk = torch.randn((2 * value.shape[0], *value.shape[1:]))
            out[prefix + "qkv." + leaf] = torch.cat([qk, value])
        else:
            out[key] = value.clone()
    out.update(DEAD)
    return out


def _write_official(path: Path, state: dict[str, torch.Tensor], **hp: Any) -> Path:
    hyper = {"sat_type": "bingmap", "metadata_type": "latlong_month_time_asource_tsource", "run_name": "tiny_test",
             "codebook_size": 64, "codebook_dim": 32, "fc_dim": 32, **hp}
    torch.save({"state_dict": state, "hyper_parameters": hyper, "epoch": 0}, path)
    return path


@pytest.fixture()
def tiny_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Official files say nothing about layer counts (they are fixed); tiny ones need the tiny sizes."""
    def config(fields: dict[str, Any]) -> ModelConfig:
        fields = dict(fields)
        base = ModelConfig.tiny(sat_type=fields.pop("sat_type"), metadata_type=fields.pop("metadata_type"))
        return base.replace(**fields)

    monkeypatch.setattr(loading, "official_config", config)


def _inputs() -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    return {
        "images": torch.randn(2, 3, 224, 224, generator=g),
        "mels": torch.randn(2, 1001, 64, generator=g) * 10 - 40,
        "hidden": torch.randn(2, 5, 24, generator=g),
        "mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool),
    }


def _outputs(model: Sat2Sound) -> list[torch.Tensor]:
    x = _inputs()
    meta = sat2sound_core.Metadata(lat=10.0, lon=20.0, hour=5, month=6, audio_source="yfcc", caption_source="qwen")
    img = model.encode_image(x["images"], [1, 3], meta if model.config.has_metadata else None, return_token_scores=True)
    aud = model.encode_audio(x["mels"])
    txt = model.encode_text_states(x["hidden"], x["mask"])
    return [img.embedding, img.codebook_weights, img.token_scores, aud.embedding, txt.embedding]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- official layout
def test_official_layout_loads_strictly_and_computes_the_same(tmp_path: Path, tiny_sizes: None) -> None:
    source = _tiny_model()
    path = _write_official(tmp_path / "tiny.ckpt", _official_state(source))
    model = load_model(path, text_encoder=False)
    assert (model.config.name, model.config.sat_type, model.config.metadata_type) == (
        "tiny_test", "bingmap", "latlong_month_time_asource_tsource")
    assert not model.training and model.precision == "fp32"
    assert _same(_outputs(model), _outputs(source))


def test_nometa_layout_is_detected_from_the_keys(tmp_path: Path, tiny_sizes: None) -> None:
    source = _tiny_model("none")
    path = _write_official(tmp_path / "tiny_nometa.ckpt", _official_state(source), metadata_type="none")
    model = load_model(path, text_encoder=False)
    assert model.config.metadata_type == "none" and model.sat_encoder is None
    assert _same(_outputs(model), _outputs(source))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("fdt.txt_query_model.q_map.1.bias"), r"1 missing key\(s\): fdt.txt_query_model.q_map.1.bias"),
        (lambda sd: sd.update({"fdt.extra_head.weight": torch.zeros(2)}), r"unexpected key\(s\): fdt.extra_head.weight"),
        (lambda sd: sd.update({"fdt.img_query_model.q_map.1.bias": torch.zeros(7)}), r"shape mismatch.*q_map.1.bias: file \(7,\)"),
    ],
)
def test_every_key_must_be_accounted_for(tmp_path: Path, tiny_sizes: None, edit: Any, message: str) -> None:
    state = _official_state(_tiny_model())
    edit(state)
    path = _write_official(tmp_path / "bad.ckpt", state)
    with pytest.raises(WeightsError, match=message):
        load_model(path, text_encoder=False)
    assert not any((Path(sat2sound_core.get_settings().home) / "converted").glob("*.safetensors"))


def test_official_files_are_converted_once_then_read_from_the_cache(
    tmp_path: Path, tiny_sizes: None, monkeypatch: pytest.MonkeyPatch, product_home: Path
) -> None:
    source = _tiny_model()
    path = _write_official(tmp_path / "tiny.ckpt", _official_state(source))
    first = load_model(path, text_encoder=False)
    cached = list((product_home / "converted").glob("tiny-*.safetensors"))
    assert len(cached) == 1
    conv = ck.read_converted(cached[0])
    assert conv.source_sha256 == ck.sha256_file(path)
    assert conv.config["name"] == "tiny_test" and conv.config["metadata_type"] == first.config.metadata_type
    assert not any(k.startswith("logit_scale") for k in conv.state_dict)  # dead keys are not kept

    def no_pickles(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the official file was unpickled again")

    monkeypatch.setattr(ck, "read_official_checkpoint", no_pickles)
    clear_model_cache()
    second = load_model(path, text_encoder=False)
    assert second is not first and second.config == first.config
    assert _same(_outputs(second), _outputs(first))


def test_our_safetensors_is_a_source_and_keeps_the_full_config(tmp_path: Path) -> None:
    source = _tiny_model()
    config = dataclasses.replace(source.config, name="tiny_st")
    path = ck.save_converted(tmp_path / "tiny.safetensors", source.state_dict(), dataclasses.asdict(config), "", "test")
    steps: list[tuple[float, float, str]] = []
    model = load_model(path, text_encoder=False, progress=lambda d, t, m="": steps.append((d, t, m)))
    assert steps[0][0] == 0 and steps[-1] == (2, 2, "model ready")
    assert model.config == config  # tuples restored from JSON lists
    assert _same(_outputs(model), _outputs(source))


def test_a_damaged_cache_entry_is_rebuilt(tmp_path: Path, tiny_sizes: None, product_home: Path) -> None:
    path = _write_official(tmp_path / "tiny.ckpt", _official_state(_tiny_model()))
    load_model(path, text_encoder=False)
    cached = next((product_home / "converted").glob("*.safetensors"))
    cached.write_bytes(cached.read_bytes()[:200])
    clear_model_cache()
    load_model(path, text_encoder=False)
    assert ck.read_converted(cached).config["name"] == "tiny_test"


# ----------------------------------------------------------------------------- caches, precision, device
def test_process_cache_is_keyed_by_file_device_and_precision(tmp_path: Path) -> None:
    source = _tiny_model()
    path = ck.save_converted(tmp_path / "t.safetensors", source.state_dict(), dataclasses.asdict(source.config), "", "")
    a = load_model(path, text_encoder=False)
    assert load_model(str(path), device="cpu", precision="fp32", text_encoder=False) is a
    b = load_model(path, precision="bf16", text_encoder=False)
    assert b is not a and b.precision == "bf16" and a.precision == "fp32"
    out_a, out_b = _outputs(a)[0], _outputs(b)[0]
    cos = torch.nn.functional.cosine_similarity(out_a, out_b.float(), dim=-1)
    assert (cos > 0.99).all()


def test_precision_and_device_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bfloat16", cpu) == "bf16"
    monkeypatch.setattr(devices, "bf16_speedup", lambda device: 2.0)  # an AVX512-BF16 CPU
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(devices, "bf16_speedup", lambda device: 0.9)  # bf16 emulated: slower
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ConfigError, match="fp32, bf16 or auto"):
        resolve_precision("fp16", cpu)
    assert bf16_flags_in("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert bf16_flags_in("flags : fpu amx_bf16 amx_tile")
    assert not bf16_flags_in("flags : fpu sse avx2 avx512f")
    assert resolve_device("cpu") == cpu and resolve_device(cpu) == cpu
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# ----------------------------------------------------------------------------- text encoder, errors, API
def test_text_encoder_is_attached_lazily(tmp_path: Path) -> None:
    source = _tiny_model()
    path = ck.save_converted(tmp_path / "t.safetensors", source.state_dict(), dataclasses.asdict(source.config), "", "")
    model = load_model(path)
    assert isinstance(model.text_encoder, LazyTextEncoder) and not model.text_encoder.loaded
    clear_model_cache()
    bare = load_model(path, text_encoder=False)
    assert bare.text_encoder is None
    with pytest.raises(WeightsError, match="no text encoder"):
        bare.encode_text(["birds"])


def test_offline_registry_name_says_what_to_download(product_home: Path) -> None:
    with pytest.raises(DownloadError, match=r"sat2sound/bingmap_withmeta.ckpt.*≈669 MB"):
        load_model("bingmap_withmeta")
    with pytest.raises(ConfigError, match="Valid names"):
        load_model("bingmap_with_meta")


def test_public_names_are_exported() -> None:
    from sat2sound_core.preprocess import audio, image

    assert sat2sound_core.load_model is load_model
    assert sat2sound_core.image_to_tensor is image.image_to_tensor
    assert sat2sound_core.log_mel is audio.log_mel
    assert sat2sound_core.load_audio is audio.load_audio


@pytest.mark.parametrize("name", ["bingmap_withmeta", "bingmap_nometa", "sentinel_withmeta", "sentinel_nometa",
                                  "SoundingEarth_withmeta", "SoundingEarth_nometa"])
def test_every_official_key_layout_fits_exactly(sat2sound_reference: Path, name: str) -> None:
    """All six official configs: the inferred config builds a model whose keys and shapes match the
    checkpoint's after conversion (shapes only, on the meta device: no 670 MB files needed)."""
    import json

    from tests.conftest import reference_file

    manifest = json.loads(reference_file(sat2sound_reference, f"manifest_{name}.json").read_text())
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    state = {e["key"]: torch.empty(e["shape"], dtype=dtypes[e["dtype"]], device="meta") for e in manifest["keys"]}
    official = ck.OfficialCheckpoint(Path(f"/nowhere/{name}.ckpt"), state, dict(manifest["hyper_parameters"]))
    fields = ck.infer_config_fields(official)
    config = loading.official_config(fields)
    assert (config.name, config.sat_type, config.metadata_type) == (
        name, manifest["hyper_parameters"]["sat_type"], manifest["hyper_parameters"]["metadata_type"])
    with torch.device("meta"):
        model = Sat2Sound(config)
    converted = loading._fill_dead_keys(model, model.convert_official_state_dict(state))
    loading._check_keys(model, converted, name)  # raises on any missing/unexpected/misshapen key
    dropped = set(state) - set(converted)
    assert dropped and all(any(p.search(k) for p in loading._unused_patterns(model)) for k in dropped
                           if not k.endswith("attn.qkv.weight") and not k.endswith("attn.qkv.bias"))
