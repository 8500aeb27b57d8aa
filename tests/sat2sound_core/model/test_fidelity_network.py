"""The network against the official numerics, stage by stage (MODEL.md §13 tolerances).

The official-layout state_dict of ``bingmap_withmeta`` is built in memory by the reference
``make_weights.py``, converted with ``Sat2Sound.convert_official_state_dict`` and loaded strictly.
Inputs are the weight-independent tensors of ``golden_shared.pt`` (transformed images, mels, stand-in
FLAN-T5 states); every stage stored in ``golden_bingmap_withmeta.pt`` and
``golden_extra_bingmap_withmeta.pt`` is compared. The config comes from the manifest, and a
structural test loads all six official layouts.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.model import Metadata, ModelConfig, Sat2Sound
from sat2sound_core.model.vit import ground_resolution, gsd_sincos_pos_embed
from sat2sound_core.preprocess.metadata import encode_metadata
from tests.conftest import reference_file

pytestmark = pytest.mark.slow

CONFIG = "bingmap_withmeta"
CONFIGS = ["bingmap_withmeta", "bingmap_nometa", "sentinel_withmeta", "sentinel_nometa",
           "SoundingEarth_withmeta", "SoundingEarth_nometa"]
REL_TOL = 1e-4  # ViT/HTS-AT/fuser tokens and token scores, relative to the largest magnitude
EMB_TOL = 1e-5  # FDT embeddings
W_TOL = 1e-6  # sparsemax weights
POS_TOL = 1e-4  # positional embedding


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def maxabs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def load_make_weights(folder: Path) -> Any:
    spec = importlib.util.spec_from_file_location("make_weights", reference_file(folder, "make_weights.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_from_manifest(manifest: dict[str, Any]) -> ModelConfig:
    hp = manifest["hyper_parameters"]
    return ModelConfig(name=manifest["config"], sat_type=hp["sat_type"], metadata_type=hp["metadata_type"],
                       fc_dim=hp["fc_dim"], codebook_dim=hp["codebook_dim"],
                       codebook_size=hp["codebook_size"], img_size=hp["sat_input_size"])


@functools.lru_cache(maxsize=1)
def official_state_dict(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(manifest, make_weights.py seed-0 state_dict) of ``name``; generated once per test session
    (it takes seconds) and shared with test_precision, which never modifies it."""
    manifest = json.loads(reference_file(folder, f"manifest_{name}.json").read_text())
    return manifest, load_make_weights(folder).build_state_dict(manifest, 0)


def build_official_model(folder: Path, name: str = CONFIG) -> Sat2Sound:
    """Sat2Sound with the make_weights.py (seed 0) weights of ``name``, loaded strictly."""
    manifest, official = official_state_dict(folder, name)
    model = Sat2Sound(config_from_manifest(manifest), init="empty")
    model.load_state_dict(model.convert_official_state_dict(official), strict=True)
    return model


@contextlib.contextmanager
def capture(**modules: nn.Module) -> Iterator[dict[str, Any]]:
    """Record the output of each named module during the block."""
    out: dict[str, Any] = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o)) for n, m in modules.items()]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def golden_items(extra: dict[str, Any]) -> list[Metadata]:
    items = []
    for i in range(len(extra["raw/lat"])):
        items.append(Metadata(
            lat=float(extra["raw/lat"][i]), lon=float(extra["raw/lon"][i]),
            hour=int(extra["raw/hour"][i]) if int(extra["raw/time_valid"][i]) else None,
            month=int(extra["raw/month"][i]) if int(extra["raw/month_valid"][i]) else None,
            audio_source=int(extra["raw/audio_source"][i]) if "raw/audio_source" in extra else None,
            caption_source=int(extra["raw/caption_source"][i]),
        ))
    return items


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shared(sat2sound_reference: Path) -> dict[str, Any]:
    return torch.load(reference_file(sat2sound_reference, "golden_shared.pt"), weights_only=False)


@pytest.fixture(scope="module")
def golden(sat2sound_reference: Path) -> dict[str, Any]:
    return torch.load(reference_file(sat2sound_reference, f"golden_{CONFIG}.pt"), weights_only=False)


@pytest.fixture(scope="module")
def extra(sat2sound_reference: Path) -> dict[str, Any]:
    return torch.load(reference_file(sat2sound_reference, f"golden_extra_{CONFIG}.pt"), weights_only=False)


@pytest.fixture(scope="module")
def model(sat2sound_reference: Path) -> Sat2Sound:
    return build_official_model(sat2sound_reference)


def sat_inputs(shared: dict[str, Any], sat_type: str, zooms: list[int]) -> torch.Tensor:
    return torch.stack([shared[f"sat_tensor/{sat_type}/zl{z}"] for z in zooms])


@pytest.fixture(scope="module")
def image_run(model: Sat2Sound, shared: dict[str, Any], golden: dict[str, Any]) -> dict[str, Any]:
    zooms = [int(z) for z in golden["img/zoom_levels"]]
    images = sat_inputs(shared, model.config.sat_type, zooms)
    meta = Metadata(**golden["env"]["meta"])
    fuser = model.sat_encoder.meta_fuser  # type: ignore[union-attr]
    with capture(vit=model.satmae_backbone.backbone, projector=model.satmae_backbone.projector,
                 meta_tokens=fuser.meta_embed, fused=fuser) as out:
        enc = model.encode_image(images, zooms, meta, return_token_scores=True)
    return {"images": images, "zooms": zooms, "meta": meta, "enc": enc, **out}


@pytest.fixture(scope="module")
def audio_run(model: Sat2Sound, shared: dict[str, Any]) -> dict[str, Any]:
    mels = torch.stack([shared["mel_start0"], shared["mel_seeded"]])  # (2,1,1001,64)
    with capture(frames=model.audio_encoder) as out:
        enc = model.encode_audio(mels, return_token_scores=True)
    return {"mels": mels, "enc": enc, **out}


# ------------------------------------------------------------------------------------------ image path
def test_inputs_are_the_shared_goldens(image_run: dict[str, Any], audio_run: dict[str, Any],
                                       golden: dict[str, Any]) -> None:
    assert torch.equal(image_run["images"], golden["img/sat_input"])
    assert torch.equal(audio_run["mels"], golden["audio/mel_input"])


def test_ground_resolution_and_positional_embedding(image_run: dict[str, Any], golden: dict[str, Any],
                                                    shared: dict[str, Any], model: Sat2Sound) -> None:
    res = ground_resolution(image_run["zooms"], model.config.sat_type)
    assert torch.equal(res, golden["img/input_res"])
    pe = gsd_sincos_pos_embed(768, 14, res)
    for i, z in enumerate(image_run["zooms"]):
        assert maxabs(pe[i], shared[f"pos_embed/{model.config.sat_type}/zl{z}"]) <= POS_TOL


def test_vit_and_projector_tokens(image_run: dict[str, Any], golden: dict[str, Any]) -> None:
    assert rel(image_run["vit"][:1], golden["img/vit_tokens_768_zl1"]) <= REL_TOL
    assert rel(image_run["vit"].mean(1), golden["img/vit_tokens_768_mean_over_tokens"]) <= REL_TOL
    assert rel(image_run["projector"], golden["img/satmae_tokens"]) <= REL_TOL


def test_metadata_inputs_and_tokens(image_run: dict[str, Any], golden: dict[str, Any], model: Sat2Sound) -> None:
    batch = encode_metadata(image_run["meta"], model.config.metadata_type, len(image_run["zooms"]))
    for key in ("audio_source", "caption_source", "latlong", "time", "month"):
        assert torch.equal(getattr(batch, key), golden[f"img/meta_input/{key}"]), key
    for key in ("time", "month"):
        assert torch.equal(batch.valid[key].long(), golden[f"img/meta_input/{key}_valid"])
    tokens, valid = image_run["meta_tokens"]
    assert torch.equal(valid, golden["img/meta_token_masks"])
    assert rel(tokens, golden["img/meta_token_embeddings"]) <= REL_TOL
    assert rel(image_run["fused"][0], golden["img/fused_tokens"]) <= REL_TOL


def test_image_codebook_outputs(image_run: dict[str, Any], golden: dict[str, Any]) -> None:
    enc = image_run["enc"]
    assert maxabs(enc.embedding, golden["img/sd_img_ft"]) <= EMB_TOL
    assert maxabs(enc.codebook_weights, golden["img/sparsemax_weights"]) <= W_TOL


def check_token_summaries(scores: torch.Tensor, golden: dict[str, Any], prefix: str,
                          codes: torch.Tensor) -> None:
    """Compare (B,N,K) token attention with the golden summaries stored under ``prefix``."""
    scale = float(golden[f"{prefix}/max_over_tokens"].abs().max())
    assert rel(scores[..., codes], golden[f"{prefix}/codes_subset"]) <= REL_TOL
    assert rel(scores.amax(1), golden[f"{prefix}/max_over_tokens"]) <= REL_TOL
    # the sum over 16000 codes cancels: compare against the magnitude of the terms
    assert maxabs(scores.sum(-1), golden[f"{prefix}/sum_over_codes"]) <= REL_TOL * scale * 16
    argmax = scores.argmax(-1)
    golden_argmax = golden[f"{prefix}/argmax_code_per_token"]
    same = argmax == golden_argmax
    if not bool(same.all()):  # only exact near-ties may differ
        chosen = scores.gather(-1, golden_argmax[..., None])[..., 0]
        assert maxabs(chosen[~same], scores.amax(-1)[~same]) <= REL_TOL * scale


def test_image_token_scores(image_run: dict[str, Any], golden: dict[str, Any], shared: dict[str, Any]) -> None:
    scores = image_run["enc"].token_scores
    assert tuple(scores.shape) == tuple(golden["img/token_att_shape"].tolist())
    check_token_summaries(scores, golden, "img/token_att", shared["code_subset"])
    heat = scores[0, :196, 0].reshape(14, 14)
    assert rel(heat, golden["img/token_att_first196_zl1_code0_14x14"]) <= REL_TOL


# ------------------------------------------------------------------------------------------ audio path
def test_audio_stages(model: Sat2Sound, audio_run: dict[str, Any], golden: dict[str, Any]) -> None:
    htsat = model.audio_encoder.model.audio_enc
    mels = audio_run["mels"][:, 0]
    with torch.inference_mode():
        after_bn0 = htsat.bn0(mels[:, None])
        folded = htsat.fold(mels)
    assert rel(after_bn0, golden["audio/after_bn0"]) <= 1e-5
    assert rel(folded, golden["audio/wav2img_256x256"]) <= 1e-5
    assert rel(audio_run["frames"], golden["audio/frame_tokens"]) <= REL_TOL


def test_audio_codebook_outputs(audio_run: dict[str, Any], golden: dict[str, Any], shared: dict[str, Any]) -> None:
    enc = audio_run["enc"]
    assert maxabs(enc.embedding, golden["audio/sd_audio_ft"]) <= EMB_TOL
    assert maxabs(enc.codebook_weights, golden["audio/sparsemax_weights"]) <= W_TOL
    check_token_summaries(enc.token_scores, golden, "audio/token_att", shared["code_subset"])


def test_short_zero_padded_clip(model: Sat2Sound, shared: dict[str, Any], golden: dict[str, Any]) -> None:
    mel = shared["mel_short3s_zero_padded"]
    assert rel(model.audio_frames(mel), golden["audio/short3s/frame_tokens"]) <= REL_TOL
    assert maxabs(model.encode_audio(mel).embedding, golden["audio/short3s/sd_audio_ft"]) <= EMB_TOL


# ------------------------------------------------------------------------------------------ text path
@pytest.mark.parametrize("which", ["A", "B"])
def test_text_path(model: Sat2Sound, shared: dict[str, Any], golden: dict[str, Any], which: str) -> None:
    hidden, mask = shared[f"text_{which}/hidden"], shared[f"text_{which}/mask"]
    enc = model.encode_text_states(hidden, mask, return_token_scores=True)
    assert maxabs(enc.embedding, golden[f"txt_{which}/sd_txt_ft"]) <= EMB_TOL
    assert maxabs(enc.codebook_weights, golden[f"txt_{which}/sparsemax_weights"]) <= W_TOL
    # with a mask the official token attention is S = T/32 · mask (MODEL.md §7)
    official_att = enc.token_scores / 32.0 * mask[..., None]
    if f"txt_{which}/token_att_full" in golden:
        assert rel(official_att, golden[f"txt_{which}/token_att_full"]) <= REL_TOL
    check_token_summaries(official_att, golden, f"txt_{which}/token_att", shared["code_subset"])
    no_mask = model.encode_text_states(hidden, torch.ones_like(mask))
    assert maxabs(no_mask.embedding, golden[f"txt_{which}/sd_txt_ft_no_mask"]) <= EMB_TOL
    assert maxabs(no_mask.embedding, enc.embedding) > 100 * EMB_TOL  # the mask matters here


# ------------------------------------------------------------------------------------------ get_embeds
def test_get_embeds_batch_and_composed_queries(model: Sat2Sound, shared: dict[str, Any], golden: dict[str, Any],
                                               image_run: dict[str, Any], audio_run: dict[str, Any]) -> None:
    zooms = image_run["zooms"][:2]
    sat = model.encode_image(sat_inputs(shared, model.config.sat_type, zooms), zooms, image_run["meta"])
    audio = audio_run["enc"]
    caption = model.encode_text_states(shared["text_A/hidden"], shared["text_A/mask"])
    llava = model.encode_text_states(shared["text_B/hidden"], shared["text_B/mask"])
    assert maxabs(sat.embedding, golden["embeds/sat_ctotal"]) <= EMB_TOL
    assert maxabs(sat.embedding, golden["embeds/fdt_sat"]) <= EMB_TOL
    assert maxabs(audio.embedding, golden["embeds/audio"]) <= EMB_TOL
    assert maxabs(caption.embedding, golden["embeds/audio_caption"]) <= EMB_TOL
    assert maxabs(llava.embedding, golden["embeds/fdt_txt"]) <= EMB_TOL
    a, c = audio.embedding, caption.embedding
    eval_query = F.normalize(F.normalize(a, dim=-1) + F.normalize(c, dim=-1), dim=-1)
    loss_query = F.normalize(a + c, dim=-1)
    assert maxabs(eval_query, golden["query/eval_l2n_of_l2n_sum"]) <= EMB_TOL
    assert maxabs(loss_query, golden["query/loss_l2n_of_raw_sum"]) <= EMB_TOL


# ------------------------------------------------------------------------------------------ extra goldens
@pytest.fixture(scope="module")
def batch3(model: Sat2Sound, shared: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    zooms = [int(z) for z in extra["b3/zoom_levels"]]
    items = golden_items(extra)
    fuser = model.sat_encoder.meta_fuser  # type: ignore[union-attr]
    with capture(meta_tokens=fuser.meta_embed, fused=fuser) as out:
        enc = model.encode_image(sat_inputs(shared, model.config.sat_type, zooms), zooms, items,
                                 return_token_scores=True)
    return {"zooms": zooms, "items": items, "enc": enc, "tokens": out["fused"][0], **out}


def test_batch_of_three_with_invalid_metadata(batch3: dict[str, Any], extra: dict[str, Any],
                                              model: Sat2Sound) -> None:
    m = int(extra["n_meta_tokens"])
    batch = encode_metadata(batch3["items"], model.config.metadata_type, 3)
    for key in ("audio_source", "caption_source", "latlong", "time", "month"):
        if f"b3/meta_input/{key}" in extra:
            assert torch.equal(getattr(batch, key), extra[f"b3/meta_input/{key}"]), key
    for key in ("time", "month"):
        assert torch.equal(batch.valid[key].long(), extra[f"b3/meta_input/{key}_valid"])
    assert torch.equal(ground_resolution(batch3["zooms"], model.config.sat_type), extra["b3/input_res"])
    tokens, valid = batch3["meta_tokens"]
    assert torch.equal(valid, extra["b3/meta_token_masks"])
    assert rel(tokens, extra["b3/meta_token_embeddings"]) <= REL_TOL
    fused = batch3["tokens"]
    assert fused.shape[1] == 196 + m
    assert rel(fused, extra["b3/fused_tokens"]) <= REL_TOL
    exactly_zero = (fused[:, 196:] == 0).all(-1)
    assert torch.equal(exactly_zero, extra["b3/fused_meta_positions_exactly_zero"])
    enc = batch3["enc"]
    assert maxabs(enc.embedding, extra["b3/sd_img_ft"]) <= EMB_TOL
    assert maxabs(enc.codebook_weights, extra["b3/sparsemax_weights"]) <= W_TOL
    # the slow path (train mode) gives visibly different results for items with invalid tokens
    slow = (enc.embedding - extra["b3_slowpath/sd_img_ft"]).abs().amax(-1)
    has_invalid = ~extra["b3/meta_token_masks"].all(-1)
    assert bool((slow[has_invalid] > 100 * EMB_TOL).all())


def test_each_item_alone(model: Sat2Sound, shared: dict[str, Any], extra: dict[str, Any],
                         batch3: dict[str, Any]) -> None:
    for i, (zoom, item) in enumerate(zip(batch3["zooms"], batch3["items"], strict=True)):
        image = sat_inputs(shared, model.config.sat_type, [zoom])
        with capture(fused=model.sat_encoder) as out:  # type: ignore[arg-type]
            enc = model.encode_image(image, zoom, item)
        tokens, valid = out["fused"]
        assert torch.equal(valid[0], extra[f"b1/item{i}/meta_token_masks"])
        assert rel(tokens[0, 196:], extra[f"b1/item{i}/fused_meta_positions"]) <= REL_TOL
        assert maxabs(enc.embedding[0], extra[f"b1/item{i}/sd_img_ft"]) <= EMB_TOL
        assert maxabs(enc.codebook_weights[0], extra[f"b1/item{i}/sparsemax_weights"]) <= W_TOL
        assert maxabs(enc.embedding[0], batch3["enc"].embedding[i]) <= EMB_TOL  # batch mates do not matter


def test_heatmap_token_attention(model: Sat2Sound, shared: dict[str, Any], extra: dict[str, Any],
                                 batch3: dict[str, Any]) -> None:
    zoom, item = batch3["zooms"][0], batch3["items"][0]
    enc = model.encode_image(sat_inputs(shared, model.config.sat_type, [zoom]), zoom, item,
                             return_token_scores=True)
    scores = enc.token_scores[0]
    assert tuple(enc.token_scores.shape) == tuple(extra["heatmap/token_att_shape"].tolist())
    first196 = scores[:196].amax(0)
    assert rel(first196, extra["heatmap/max_over_first196"]) <= REL_TOL
    assert rel(scores.amax(0), extra["heatmap/max_over_all_tokens"]) <= REL_TOL
    top = torch.sort(first196, descending=True, stable=True).indices[:64]
    assert torch.equal(top, extra["heatmap/top64_codes"])
    assert rel(first196[top], extra["heatmap/top64_scores"]) <= REL_TOL
    assert rel(torch.sort(first196, descending=True).values[64], extra["heatmap/score_65th"]) <= REL_TOL
    assert rel(scores[:196][:, top], extra["heatmap/token_att_first196_top64"]) <= REL_TOL
    assert torch.equal(scores.argmax(-1), extra["heatmap/argmax_code_per_token"])


# ------------------------------------------------------------------------------------------ all layouts
@pytest.mark.parametrize("name", CONFIGS)
def test_every_official_layout_converts_and_loads_strictly(sat2sound_reference: Path, name: str) -> None:
    manifest = json.loads(reference_file(sat2sound_reference, f"manifest_{name}.json").read_text())
    official = {e["key"]: torch.empty(e["shape"], dtype=getattr(torch, e["dtype"]), device="meta")
                for e in manifest["keys"]}
    assert len(official) == manifest["num_state_dict_keys"]
    config = config_from_manifest(manifest)
    with torch.device("meta"):
        model = Sat2Sound(config)
    converted = model.convert_official_state_dict(official)
    own = model.state_dict()
    assert set(converted) == set(own)
    for key, value in own.items():
        assert converted[key].shape == value.shape and converted[key].dtype == value.dtype, key
    model.load_state_dict(converted, strict=True, assign=True)
    dropped = set(official) - set(model.official_keys())
    # only the documented dead weights are dropped
    assert all(k.startswith(("logit_scale_", "audio_encoder.model.audio_enc.")) for k in dropped)
    assert not any(k.startswith(("satmae_backbone", "sat_encoder", "fdt")) for k in dropped)
    assert (model.sat_encoder is not None) == ("sat_encoder" in " ".join(official))
    n_params = sum(v.numel() for k, v in official.items() if k in set(model.official_keys()))
    assert n_params < manifest["total_state_dict_elements"]
