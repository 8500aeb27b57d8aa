"""Weights: sources, download (loopback Hub), offline messages, exact key checks, config reading,
the tokenizer, and the process-wide T5 encoder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sat2sound_core.common.errors import DownloadError, WeightsError
from sat2sound_core.synthesis import load_synthesizer
from sat2sound_core.synthesis.components import ConditioningHeads, build_t5, build_transformer, build_vae
from sat2sound_core.synthesis.synthesizer import _meta_build, _t5_key
from sat2sound_core.synthesis.tokenizer import VocabTokenizer, unconditional_tokens
from sat2sound_core.synthesis.weights import (
    EXPECTED_MISSING,
    expected_shapes,
    read_config,
    resolve_weights,
)
from tests.conftest import reference_file
from tests.sat2sound_core.synthesis.hub_server import COMMIT, HubServer, repo_from_folder

REPO_FILES = ["config.json", "tangoflux.safetensors", "vae.safetensors"]


@pytest.fixture()
def tiny_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny model folder (for mutating its files)."""
    dst = tmp_path / "tiny"
    shutil.copytree(tiny_dir, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return dst


def test_tiny_config_is_read_like_the_official_class(tiny_dir):
    config = read_config(tiny_dir)
    assert config.transformer == json.loads((tiny_dir / "transformer_config.json").read_text())
    assert config.t5["d_model"] == 32 and config.vae["decoder_channels"] == 4
    assert config.latent_frames == 645 and config.max_duration == 30
    assert not config.is_flan_t5_large


def test_real_size_architecture_matches_the_manifest(tangoflux_reference, tmp_path):
    """The modules we build for the released config have exactly the keys and shapes of the real files."""
    manifest = json.loads(reference_file(tangoflux_reference, "manifest_tangoflux.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(manifest["config"]["tangoflux_config_json"]))
    config = read_config(tmp_path)
    assert config.is_flan_t5_large
    built = {
        **expected_shapes(_meta_build(lambda: build_t5(config)), "text_encoder."),
        **expected_shapes(_meta_build(lambda: build_transformer(config)), "transformer."),
        **expected_shapes(_meta_build(lambda: ConditioningHeads(config))),
    }
    in_file = {row["key"]: tuple(row["shape"]) for row in manifest["tangoflux_safetensors"] if row["in_file"]}
    not_in_file = {row["key"] for row in manifest["tangoflux_safetensors"] if not row["in_file"]}
    assert not_in_file == set(EXPECTED_MISSING)
    assert {k: v for k, v in built.items() if k not in EXPECTED_MISSING} == in_file
    vae = expected_shapes(_meta_build(lambda: build_vae(config)))
    assert vae == {row["key"]: tuple(row["shape"]) for row in manifest["vae_safetensors"]}
    assert sum(torch.Size(s).numel() for s in in_file.values()) == manifest["counts"]["file_params_total"]


def _mutate(folder: Path, change) -> None:
    path = folder / "tangoflux.safetensors"
    state = load_file(path)
    change(state)
    save_file(state, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("transformer.proj_out.weight"), "1 missing"),
        (lambda s: s.__setitem__("transformer.extra.weight", torch.zeros(2)), "1 unexpected"),
        (lambda s: s.__setitem__("fc.0.bias", torch.zeros(31)), "1 shape mismatch(es): fc.0.bias: file (31,) vs model"),
        (lambda s: s.pop("text_encoder.shared.weight"), "text_encoder.shared.weight"),
    ],
    ids=["missing", "unexpected", "shape", "t5-embedding"],
)
def test_key_set_is_checked_exactly(tiny_copy, change, message):
    _mutate(tiny_copy, change)
    with pytest.raises(WeightsError, match=re.escape(message)):
        load_synthesizer(tiny_copy, cache=False)


def test_vae_keys_checked(tiny_copy):
    state = load_file(tiny_copy / "vae.safetensors")
    state.pop("decoder.conv2.weight_g")
    save_file(state, tiny_copy / "vae.safetensors")
    with pytest.raises(WeightsError, match="vae.safetensors"):
        load_synthesizer(tiny_copy, cache=False)


def test_pickle_or_garbage_is_refused(tiny_copy):
    (tiny_copy / "vae.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_synthesizer(tiny_copy, cache=False)


def test_folder_without_weights_says_what_to_get(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match=r"tangoflux\.safetensors.*3\.44 GB"):
        load_synthesizer(tmp_path, cache=False)


def test_unknown_source(product_home):
    with pytest.raises(WeightsError, match="neither a folder nor a Hugging Face repo id"):
        load_synthesizer("./no/such/folder", cache=False)


def test_offline_and_missing_names_files_and_sizes(product_home):
    with pytest.raises(DownloadError) as info:
        load_synthesizer("declare-lab/TangoFlux", cache=False)
    text = str(info.value)
    for expected in ("offline", "tangoflux.safetensors (3.44 GB)", "vae.safetensors", "huggingface-cli download",
                     "SAT2SOUND_TANGOFLUX", "HF_HUB_OFFLINE"):
        assert expected in text


@pytest.fixture()
def online_home(tmp_path, monkeypatch):
    """A product home with downloads allowed (the Hub itself is a loopback server)."""
    import huggingface_hub.constants as hub_constants

    from sat2sound_core.common.settings import get_settings

    monkeypatch.setenv("SAT2SOUND_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SAT2SOUND_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_download_from_a_loopback_hub_with_progress_then_offline(online_home, tiny_dir, monkeypatch):
    from sat2sound_core.common.settings import get_settings

    files = {"test-org/tiny-tangoflux": repo_from_folder(tiny_dir, REPO_FILES)}
    progress = []
    with HubServer(files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        location = resolve_weights("hf-hub:test-org/tiny-tangoflux", progress=lambda *a: progress.append(a))
        fetched = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]
    assert location.revision == COMMIT and location.source == "hf-hub:test-org/tiny-tangoflux"
    assert location.folder.is_relative_to(online_home / "weights")
    for name in REPO_FILES:
        assert (location.folder / name).read_bytes() == (tiny_dir / name).read_bytes()
    assert len(fetched) == 3
    done, total, message = progress[-1]
    assert done == total == (tiny_dir / "vae.safetensors").stat().st_size and "vae.safetensors" in message

    # the server is gone and we are offline: the cached snapshot is found without the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()
    again = resolve_weights("test-org/tiny-tangoflux")
    assert again.folder == location.folder and again.revision == COMMIT


def test_download_failure_names_the_file(online_home, monkeypatch):
    with HubServer({"test-org/other": {"config.json": b"{}"}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(DownloadError, match="has no file tangoflux.safetensors"):
            resolve_weights("test-org/other")


def test_tokenizer_files_come_from_the_hub_when_the_folder_has_none(online_home, tiny_dir, monkeypatch):
    """A weights folder without tokenizer files makes the loader fetch only FLAN-T5's small tokenizer files."""
    from sat2sound_core.synthesis import tokenizer as tok_module
    from sat2sound_core.synthesis.weights import TOKENIZER_FILES, TOKENIZER_REPO
    from sat2sound_core.weights.hub import fetch_repo_files

    served = {name: f"stand-in {name}".encode() for name in TOKENIZER_FILES}
    with HubServer({TOKENIZER_REPO: served}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        folder, commit = fetch_repo_files(TOKENIZER_REPO, TOKENIZER_FILES)
        names = sorted(p.rsplit("/", 1)[-1] for m, p in hub.requests if m == "GET" and "/resolve/" in p)
    assert names == sorted(TOKENIZER_FILES) and "model.safetensors" not in names
    assert all((folder / n).read_bytes() == served[n] for n in TOKENIZER_FILES)
    loaded = []
    monkeypatch.setattr(tok_module, "HFTokenizer", lambda f: loaded.append(f) or "tok")
    assert tok_module.load_tokenizer(Path(online_home)) == "tok"  # empty folder → fetched (now cached)
    assert loaded == [folder]


def test_vocab_tokenizer():
    tok = VocabTokenizer(["<pad>", "</s>", "<unk>", "\u2581birds", "\u2581chi", "rp", "ing", "\u2581a"])
    assert tok.encode("birds chirping") == [3, 4, 5, 6, 1]
    assert tok.encode("a zebra birds") == [7, 2, 3, 1]  # unknown word → one <unk>
    assert tok.decode([3, 4, 5, 6, 1]) == "birds chirping"
    ids, mask = unconditional_tokens(4, rows=2)
    assert ids.tolist() == [[1, 0, 0, 0]] * 2 and mask.tolist() == [[1, 0, 0, 0]] * 2


def test_t5_encoder_is_shared(tiny_dir, tiny_synth):
    from sat2sound_core.common.shared import peek

    again = load_synthesizer(tiny_dir, device="cpu", precision="fp32", cache=False)
    assert again.t5 is tiny_synth.t5
    key = _t5_key(tiny_synth.config, tiny_synth.weights, torch.device("cpu"))
    assert peek(key) is tiny_synth.t5 and str(tiny_dir.resolve()) in key
    assert not tiny_synth.t5.training
    assert tiny_synth.t5.encoder.embed_tokens.weight is tiny_synth.t5.shared.weight


def test_real_t5_key_is_the_shared_one(tmp_path):
    from sat2sound_core.synthesis.components import TangoFluxConfig
    from sat2sound_core.synthesis.weights import WeightsLocation

    loc = WeightsLocation(tmp_path, "hf-hub:declare-lab/TangoFlux", "abc")
    assert _t5_key(TangoFluxConfig(), loc, torch.device("cpu")) == "flan-t5-large|cpu|torch.float32"


def test_load_synthesizer_end_to_end_from_a_loopback_hub(online_home, tiny_dir, monkeypatch):
    """hf-hub source → download with progress → key checks → synthesis → cached clip under SAT2SOUND_HOME."""
    from sat2sound_core.synthesis import weights as weights_module

    extra = ["transformer_config.json", "t5_config.json", "vae_config.json", "vocab.json"]
    # the real repo has only the three files; the tiny model's configs and vocabulary travel with it here
    monkeypatch.setattr(weights_module, "REPO_FILES", {**weights_module.REPO_FILES, **dict.fromkeys(extra, 1000)})
    files = {"test-org/tiny-tangoflux": repo_from_folder(tiny_dir, REPO_FILES + extra)}
    seen = []
    with HubServer(files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        synth = load_synthesizer("hf-hub:test-org/tiny-tangoflux", progress=lambda *a: seen.append(a[2]))
    assert any("downloading tangoflux.safetensors" in m for m in seen) and seen[-1] == "TangoFlux ready"
    assert synth.weights.revision == COMMIT
    clip = synth.synthesize("heavy traffic with car horns", duration=0.5, steps=1)
    assert clip.samples.shape == (2, 22050) and clip.metadata["weights_revision"] == COMMIT
    assert list((online_home / "synthesis").glob("*.wav"))


def test_sentencepiece_tokenizer_folder_beside_the_weights(tiny_dir, golden, tmp_path):
    """A ``tokenizer/`` folder (T5Tokenizer files, as FLAN-T5 ships) is used through transformers and
    gives the same ids as the official tokenisation of the golden captions."""
    from transformers import T5Tokenizer

    from sat2sound_core.synthesis.tokenizer import HFTokenizer, load_tokenizer, tokenize_caption

    pieces = json.loads((tiny_dir / "vocab.json").read_text())["vocab"]
    T5Tokenizer(vocab=[(p, 0.0) for p in pieces], extra_ids=0).save_pretrained(tmp_path / "tokenizer")
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, HFTokenizer)
    for case in golden["cases"]:
        assert torch.equal(tokenize_caption(tok, case["caption"]).input_ids, case["cond_input_ids"])
    with pytest.warns(UserWarning, match="dropped the end: 'river river'"):
        tokens = tokenize_caption(tok, " ".join(["birds"] * 63 + ["river"] * 2))
    assert tokens.length == 64 and tokens.truncated == "river river"
