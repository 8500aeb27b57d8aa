"""End to end against the official numerics: make_weights.py checkpoint -> load_model -> raw inputs.

The checkpoint is written in the official Lightning layout by the reference ``make_weights.py`` and
loaded through the public ``load_model``; inputs start from raw pixels and waveforms and go through
our ``image_to_tensor`` and ``log_mel``. Outputs are compared with ``golden_bingmap_withmeta.pt`` and
``golden_extra_bingmap_withmeta.pt`` at the tolerances of MODEL.md §13. Nothing here is specific to
this config except the file names: the other configs' goldens are checked the same way elsewhere.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sat2sound_core import Metadata, image_to_tensor, load_model, log_mel
from sat2sound_core.preprocess.image import images_to_tensor
from sat2sound_core.weights.loading import clear_model_cache
from tests.conftest import ResultsOnCpu, reference_file
from tests.sat2sound_core.model.test_fidelity_network import load_make_weights, maxabs, rel

pytestmark = pytest.mark.slow

CONFIG = "bingmap_withmeta"
EMB_TOL = 1e-5  # FDT embeddings
W_TOL = 1e-6  # sparsemax weights
REL_TOL = 1e-4  # tokens, relative to the largest magnitude
META_NAMES = {"audio_source": ["yfcc", "iNat", "aporee", "freesound"], "caption_source": ["meta", "qwen", "pengi"]}


@pytest.fixture(scope="module")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from sat2sound_core.common.settings import get_settings

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAT2SOUND_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        get_settings.cache_clear()
        clear_model_cache()
        yield home
        clear_model_cache()
    get_settings.cache_clear()
    for converted in (home / "converted").glob("*.safetensors"):
        converted.unlink()


@pytest.fixture(scope="module")
def official_ckpt(sat2sound_reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The synthetic official-layout checkpoint (≈670 MB), written once per test session."""
    out = tmp_path_factory.mktemp("weights") / f"weights_{CONFIG}_seed0.ckpt"
    load_make_weights(sat2sound_reference).make_checkpoint(
        str(reference_file(sat2sound_reference, f"manifest_{CONFIG}.json")), str(out), 0
    )
    yield out
    out.unlink(missing_ok=True)  # pytest keeps old temp folders; do not leave 670 MB in each


@pytest.fixture(scope="module")
def goldens(sat2sound_reference: Path) -> dict[str, dict]:
    load = lambda name: torch.load(reference_file(sat2sound_reference, name), weights_only=False)  # noqa: E731
    return {
        "shared": load("golden_shared.pt"),
        "model": load(f"golden_{CONFIG}.pt"),
        "extra": load(f"golden_extra_{CONFIG}.pt"),
    }


@pytest.fixture(scope="module")
def model(session_home: Path, official_ckpt: Path, test_device: str) -> Any:
    """The official-layout checkpoint through ``load_model`` (on ``SAT2SOUND_TEST_DEVICE``; results
    come back on the CPU either way)."""
    loaded = load_model(official_ckpt, device=test_device, text_encoder=False)
    return loaded if test_device == "cpu" else ResultsOnCpu(loaded)


def _metadata(raw: dict, i: int) -> Metadata:
    """Metadata of item i of golden_extra's raw/* (an invalid flag means 'unknown')."""
    return Metadata(
        lat=float(raw["raw/lat"][i]),
        lon=float(raw["raw/lon"][i]),
        hour=int(raw["raw/hour"][i]) if int(raw["raw/time_valid"][i]) else None,
        month=int(raw["raw/month"][i]) if int(raw["raw/month_valid"][i]) else None,
        audio_source=META_NAMES["audio_source"][int(raw["raw/audio_source"][i])],
        caption_source=META_NAMES["caption_source"][int(raw["raw/caption_source"][i])],
    )


# ------------------------------------------------------------------------------------------ image
@pytest.fixture(scope="module")
def image_run(model: Any, goldens: dict) -> dict[str, Any]:
    shared, gold, extra = goldens["shared"], goldens["model"], goldens["extra"]
    zooms = [int(z) for z in gold["img/zoom_levels"]]
    pixels = shared["image_uint8/bingmap"].numpy()
    x = images_to_tensor([pixels] * len(zooms), zooms, "bingmap")
    meta = _metadata(extra, 0)  # the golden's META is golden_extra's item 0
    enc = model.encode_image(x, zooms, meta, return_token_scores=True)
    tokens, valid = model.image_tokens(x, zooms, meta)
    return {"x": x, "zooms": zooms, "meta": meta, "enc": enc, "tokens": tokens, "valid": valid}


def test_config_is_inferred_from_the_checkpoint(model: Any) -> None:
    assert model.config.name == CONFIG
    assert model.config.sat_type == "bingmap"
    assert model.config.metadata_type == "latlong_month_time_asource_tsource"


def test_image_inputs_from_raw_pixels_are_exact(image_run: dict, goldens: dict) -> None:
    assert torch.equal(image_run["x"], goldens["model"]["img/sat_input"])


def test_metadata_encodings_are_exact(image_run: dict, goldens: dict) -> None:
    from sat2sound_core.preprocess.metadata import encode_metadata

    gold = goldens["model"]
    batch = encode_metadata(image_run["meta"], "latlong_month_time_asource_tsource", len(image_run["zooms"]))
    assert torch.equal(batch.latlong, gold["img/meta_input/latlong"])
    assert torch.equal(batch.month, gold["img/meta_input/month"])
    assert torch.equal(batch.time, gold["img/meta_input/time"])


def test_image_path_matches_golden(image_run: dict, goldens: dict) -> None:
    gold, shared = goldens["model"], goldens["shared"]
    enc, tokens = image_run["enc"], image_run["tokens"]
    assert tokens.shape == gold["img/fused_tokens"].shape
    assert rel(tokens, gold["img/fused_tokens"]) < REL_TOL
    assert enc.embedding.shape == (3, 1024) and enc.codebook_weights.shape == (3, 16000)
    assert maxabs(enc.embedding, gold["img/sd_img_ft"]) < EMB_TOL
    assert maxabs(enc.codebook_weights, gold["img/sparsemax_weights"]) < W_TOL
    scores = enc.token_scores
    assert tuple(scores.shape) == tuple(int(v) for v in gold["img/token_att_shape"])
    assert rel(scores[:, :, shared["code_subset"]], gold["img/token_att/codes_subset"]) < REL_TOL
    assert rel(scores.max(dim=1).values, gold["img/token_att/max_over_tokens"]) < REL_TOL
    assert rel(scores.sum(dim=-1), gold["img/token_att/sum_over_codes"]) < REL_TOL
    agree = (scores.argmax(dim=-1) == gold["img/token_att/argmax_code_per_token"]).float().mean()
    assert agree > 0.99
    first = scores[0, :196, 0].reshape(14, 14)
    assert rel(first, gold["img/token_att_first196_zl1_code0_14x14"]) < REL_TOL


def test_get_embeds_batch_and_composed_queries(model: Any, image_run: dict, goldens: dict) -> None:
    gold, shared = goldens["model"], goldens["shared"]
    # get_embeds ran on the first two zooms as one batch; results do not depend on batch mates
    assert maxabs(image_run["enc"].embedding[:2], gold["embeds/sat_ctotal"]) < EMB_TOL
    assert torch.equal(gold["embeds/fdt_sat"], gold["embeds/sat_ctotal"])
    st = shared["waveform_stereo_44100"]
    start = int(shared["mel_seeded_start_sample_32k"])
    mels = torch.stack([log_mel(st, 44100), log_mel(st, 44100, start_seconds=start / 32000)])
    audio = model.encode_audio(mels).embedding
    caption = model.encode_text_states(shared["text_A/hidden"], shared["text_A/mask"]).embedding
    llava = model.encode_text_states(shared["text_B/hidden"], shared["text_B/mask"]).embedding
    assert maxabs(audio, gold["embeds/audio"]) < EMB_TOL
    assert maxabs(caption, gold["embeds/audio_caption"]) < EMB_TOL
    assert maxabs(llava, gold["embeds/fdt_txt"]) < EMB_TOL
    l2n = torch.nn.functional.normalize
    assert maxabs(l2n(l2n(audio) + l2n(caption)), gold["query/eval_l2n_of_l2n_sum"]) < EMB_TOL
    assert maxabs(l2n(audio + caption), gold["query/loss_l2n_of_raw_sum"]) < EMB_TOL


# ------------------------------------------------------------------------------------------ audio
def test_audio_path_from_raw_waveform_matches_golden(model: Any, goldens: dict) -> None:
    gold, shared = goldens["model"], goldens["shared"]
    st = shared["waveform_stereo_44100"]
    start = int(shared["mel_seeded_start_sample_32k"])
    mels = torch.stack([log_mel(st, 44100), log_mel(st, 44100, start_seconds=start / 32000)])
    assert (mels - gold["audio/mel_input"][:, 0]).abs().max() < 1e-3
    frames = model.audio_frames(mels)
    assert rel(frames, gold["audio/frame_tokens"]) < REL_TOL
    enc = model.encode_audio(mels, return_token_scores=True)
    assert maxabs(enc.embedding, gold["audio/sd_audio_ft"]) < EMB_TOL
    assert maxabs(enc.codebook_weights, gold["audio/sparsemax_weights"]) < W_TOL
    scores = enc.token_scores
    assert scores.shape == (2, 32, 16000)
    assert rel(scores[:, :, shared["code_subset"]], gold["audio/token_att/codes_subset"]) < REL_TOL
    assert rel(scores.max(dim=1).values, gold["audio/token_att/max_over_tokens"]) < REL_TOL
    assert torch.equal(scores.argmax(dim=-1), gold["audio/token_att/argmax_code_per_token"])


def test_short_clip_is_padded_and_matches(model: Any, goldens: dict) -> None:
    gold, shared = goldens["model"], goldens["shared"]
    mel = log_mel(shared["waveform_mono_32000"][0, : 3 * 32000], 32000)
    assert rel(model.audio_frames(mel[None]), gold["audio/short3s/frame_tokens"]) < REL_TOL
    assert maxabs(model.encode_audio(mel[None]).embedding, gold["audio/short3s/sd_audio_ft"]) < EMB_TOL


# ------------------------------------------------------------------------------------------ text
@pytest.mark.parametrize("name", ["A", "B"])
def test_text_states_match_golden(model: Any, goldens: dict, name: str) -> None:
    gold, shared = goldens["model"], goldens["shared"]
    hidden, mask = shared[f"text_{name}/hidden"], shared[f"text_{name}/mask"]
    enc = model.encode_text_states(hidden, mask, return_token_scores=True)
    assert maxabs(enc.embedding, gold[f"txt_{name}/sd_txt_ft"]) < EMB_TOL
    assert maxabs(enc.codebook_weights, gold[f"txt_{name}/sparsemax_weights"]) < W_TOL
    # the official masked token attention is S = T/32 with padded tokens zeroed
    masked = enc.token_scores / 32 * mask[..., None]
    assert rel(masked[:, :, shared["code_subset"]], gold[f"txt_{name}/token_att/codes_subset"]) < REL_TOL
    if f"txt_{name}/token_att_full" in gold:
        assert rel(masked, gold[f"txt_{name}/token_att_full"]) < REL_TOL
    # and the official multiplicative mask matters: without it the embedding differs
    assert maxabs(gold[f"txt_{name}/sd_txt_ft_no_mask"], gold[f"txt_{name}/sd_txt_ft"]) > 10 * EMB_TOL


# ------------------------------------------------------------------------------------------ extra
def test_mixed_metadata_batch_and_single_items(model: Any, goldens: dict) -> None:
    extra, shared = goldens["extra"], goldens["shared"]
    zooms = [int(z) for z in extra["b3/zoom_levels"]]
    pixels = shared["image_uint8/bingmap"].numpy()
    x = images_to_tensor([pixels] * 3, zooms, "bingmap")
    metas = [_metadata(extra, i) for i in range(3)]
    tokens, valid = model.image_tokens(x, zooms, metas)
    assert rel(tokens, extra["b3/fused_tokens"]) < REL_TOL
    m = int(extra["n_meta_tokens"])
    zero = (tokens[:, 196:] == 0).all(dim=-1)
    assert torch.equal(zero, extra["b3/fused_meta_positions_exactly_zero"])
    assert torch.equal(valid[:, 196:], extra["b3/meta_token_masks"])
    enc = model.encode_image(x, zooms, metas)
    assert maxabs(enc.embedding, extra["b3/sd_img_ft"]) < EMB_TOL
    assert maxabs(enc.codebook_weights, extra["b3/sparsemax_weights"]) < W_TOL
    for i in (0, 2):  # alone: the full-metadata item and the one with month and time unknown
        one = model.encode_image(image_to_tensor(pixels, zooms[i], "bingmap")[None], zooms[i], metas[i],
                                 return_token_scores=(i == 0))
        assert maxabs(one.embedding[0], extra[f"b1/item{i}/sd_img_ft"]) < EMB_TOL
        assert maxabs(one.codebook_weights[0], extra[f"b1/item{i}/sparsemax_weights"]) < W_TOL
        if i == 0:  # the heatmap of the official map demo: first 196 tokens, top-64 codes
            scores = one.token_scores[0]
            assert scores.shape == (196 + m, 16000)
            first = scores[:196]
            assert rel(first.max(dim=0).values, extra["heatmap/max_over_first196"]) < REL_TOL
            assert rel(scores.max(dim=0).values, extra["heatmap/max_over_all_tokens"]) < REL_TOL
            top = extra["heatmap/top64_codes"]
            assert rel(first[:, top], extra["heatmap/token_att_first196_top64"]) < REL_TOL
            ours_top = torch.sort(first.max(dim=0).values, descending=True, stable=True).indices[:64]
            assert len(set(ours_top.tolist()) & set(top.tolist())) >= 63


# ------------------------------------------------------------------------------------------ caching
def test_converted_safetensors_reload_gives_identical_outputs(
    model: Any, official_ckpt: Path, session_home: Path, goldens: dict
) -> None:
    from safetensors import safe_open

    shared = goldens["shared"]
    x = image_to_tensor(shared["image_uint8/bingmap"].numpy(), 1, "bingmap")[None]
    mel = log_mel(shared["waveform_mono_32000"][0], 32000)[None]
    before = (model.encode_image(x, 1, None).embedding, model.encode_audio(mel).embedding)

    converted = sorted((session_home / "converted").glob("*.safetensors"))
    assert len(converted) == 1
    with safe_open(str(converted[0]), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"])["sat_type"] == "bingmap"
    assert len(meta["source_sha256"]) == 64

    clear_model_cache()
    again = load_model(official_ckpt, text_encoder=False)  # served from the converted cache
    assert again is not model
    direct = load_model(converted[0], text_encoder=False)  # our safetensors as a source
    for other in (again, direct):
        assert other.config == model.config
        assert torch.equal(other.encode_image(x, 1, None).embedding, before[0])
        assert torch.equal(other.encode_audio(mel).embedding, before[1])
    assert load_model(official_ckpt, text_encoder=False) is again  # process-wide cache


def test_nometa_checkpoint_warns_and_ignores_metadata(
    sat2sound_reference: Path, tmp_path: Path, session_home: Path, goldens: dict
) -> None:
    make = load_make_weights(sat2sound_reference)
    ckpt = tmp_path / "bingmap_nometa.ckpt"
    make.make_checkpoint(str(reference_file(sat2sound_reference, "manifest_bingmap_nometa.json")), str(ckpt), 0)
    nometa = load_model(ckpt, text_encoder=False, use_cache=False)
    assert nometa.config.metadata_type == "none" and nometa.sat_encoder is None
    x = image_to_tensor(goldens["shared"]["image_uint8/bingmap"].numpy(), 1, "bingmap")[None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = nometa.encode_image(x, 1, None)
    with pytest.warns(UserWarning, match="ignored"):
        with_meta = nometa.encode_image(x, 1, Metadata(lat=10.0, lon=20.0, hour=3, month=4))
    assert torch.equal(plain.embedding, with_meta.embedding)
    assert np.isfinite(plain.embedding.numpy()).all()
    ckpt.unlink()
