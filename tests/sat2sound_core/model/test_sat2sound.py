"""The Sat2Sound public API on a tiny config: shapes, validation, metadata semantics, conversion."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.common.errors import ConfigError, InputError, WeightsError
from sat2sound_core.model import Encoding, Metadata, ModelConfig, Sat2Sound
from sat2sound_core.preprocess.metadata import encode_metadata

META = Metadata(lat=38.6, lon=-90.2, hour=13, month=5, audio_source="yfcc", caption_source="meta")


def _model(**kw: object) -> Sat2Sound:
    torch.manual_seed(0)
    model = Sat2Sound(ModelConfig.tiny(**kw))  # type: ignore[arg-type]
    with torch.no_grad():  # non-trivial norms so that dropped affine terms would show
        for name, p in model.named_parameters():
            if "norm" in name or "q_map.0" in name or "q_map.3" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def model() -> Sat2Sound:
    return _model()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 224, 224)


def test_encode_image_outputs(model: Sat2Sound, images: torch.Tensor) -> None:
    cfg = model.config
    enc = model.encode_image(images, [1, 3, 5], META)
    assert isinstance(enc, Encoding)
    assert enc.embedding.shape == (3, cfg.codebook_dim) and enc.codebook_weights.shape == (3, cfg.codebook_size)
    assert enc.token_scores is None
    assert torch.allclose(enc.codebook_weights.sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(enc.embedding, enc.codebook_weights @ model.fdt.space_dict, atol=1e-5)
    full = model.encode_image(images, [1, 3, 5], META, return_token_scores=True)
    assert full.token_scores is not None and full.token_scores.shape == (3, 196 + 5, cfg.codebook_size)
    assert full.token_valid is not None and full.token_valid.all()
    assert torch.allclose(full.embedding, enc.embedding, atol=1e-6)
    # the token scores are the raw products: pooling them reproduces the weights
    pooled = full.token_scores.amax(1) / model.fdt.scale / 1000
    from sat2sound_core.model.fdt import sparsemax

    assert torch.allclose(sparsemax(pooled), enc.codebook_weights, atol=1e-6)
    assert not enc.embedding.requires_grad


@pytest.mark.parametrize(
    ("images", "scales", "message"),
    [
        (torch.zeros(2, 3, 200, 200), 1, r"\(B, 3, 224, 224\)"),
        (torch.zeros(2, 224, 224, 3), 1, r"\(B, 3, 224, 224\)"),
        (torch.zeros(2, 3, 224, 224, dtype=torch.uint8), 1, "floating-point"),
        (torch.full((1, 3, 224, 224), float("nan")), 1, "NaN"),
        (torch.zeros(2, 3, 224, 224), 2, r"scale\(s\) \[2\].*use one of \[1, 3, 5\]"),
        (torch.zeros(2, 3, 224, 224), [1, 3, 5], "3 scales for a batch of 2"),
        (torch.zeros(2, 3, 224, 224), "1", "int or a list"),
        (torch.zeros(2, 3, 224, 224), 1.5, "int or a list"),
        (torch.zeros(2, 3, 224, 224), [1, True], "int or a list"),
    ],
)
def test_encode_image_rejects_bad_input(model: Sat2Sound, images: torch.Tensor, scales: object,
                                        message: str) -> None:
    with pytest.raises(InputError, match=message):
        model.encode_image(images, scales, META)  # type: ignore[arg-type]


def test_scales_depend_on_sat_type() -> None:
    ge = _model(sat_type="googleEarth", metadata_type="none")
    ge.encode_image(torch.zeros(1, 3, 224, 224), 1)
    with pytest.raises(InputError, match="googleEarth"):
        ge.encode_image(torch.zeros(1, 3, 224, 224), 3)


def test_single_image_without_batch_axis(model: Sat2Sound, images: torch.Tensor) -> None:
    import numpy as np

    one = model.encode_image(images[0], 1, META)
    batch = model.encode_image(images[:1], [1], [META])
    assert torch.allclose(one.embedding, batch.embedding, atol=1e-6)
    as_numpy = model.encode_image(images[:1], np.array([1]), [META])
    assert torch.allclose(as_numpy.embedding, batch.embedding, atol=1e-6)


def test_invalid_metadata_tokens_are_zero_and_not_keys(model: Sat2Sound, images: torch.Tensor) -> None:
    no_time = Metadata(lat=38.6, lon=-90.2, month=5, audio_source="yfcc", caption_source="meta")
    no_latlong = Metadata(hour=13, month=5, audio_source="yfcc", caption_source="meta")
    items = [META, no_time, no_latlong]
    tokens, valid = model.image_tokens(images, [1, 1, 3], items)
    assert valid[:, 196:].tolist() == [[True] * 5, [True] * 4 + [False], [True, True, False, True, True]]
    assert torch.equal(tokens[1, 196 + 4], torch.zeros(tokens.shape[-1]))
    assert torch.equal(tokens[2, 196 + 2], torch.zeros(tokens.shape[-1]))
    assert tokens[0, 196:].abs().amin(-1).gt(0).any()

    # the same item run through the fuser with the invalid token removed from the sequence
    fuser = model.sat_encoder.meta_fuser  # type: ignore[union-attr]
    with torch.inference_mode():
        base = model.satmae_backbone(images[1:2], torch.tensor([0.6]))
        meta_tokens, _ = fuser.meta_embed(encode_metadata([no_time], model.config.metadata_type, 1))
        x = torch.cat([base, meta_tokens[:, :4]], dim=1)
        for layer in fuser.transformer_encoder.layers:
            x = layer(x, None)
    assert torch.allclose(tokens[1, :200], x[0], atol=1e-5)

    # an item's result does not depend on its batch mates
    for i, item in enumerate(items):
        alone, _ = model.image_tokens(images[i:i + 1], [[1, 1, 3][i]], [item])
        assert torch.allclose(alone[0], tokens[i], atol=1e-5), i


def test_metadata_changes_the_embedding(model: Sat2Sound, images: torch.Tensor) -> None:
    a = model.encode_image(images[:1], 1, META).embedding
    b = model.encode_image(images[:1], 1, Metadata(lat=-33.9, lon=151.2, hour=2, month=11,
                                                   audio_source="freesound", caption_source="qwen")).embedding
    c = model.encode_image(images[:1], 1, None).embedding
    assert not torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)


def test_nometa_model_warns_and_ignores_metadata(images: torch.Tensor) -> None:
    nometa = _model(metadata_type="none")
    assert nometa.sat_encoder is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = nometa.encode_image(images[:2], 1, None, return_token_scores=True)
        nometa.encode_image(images[:2], 1, [None, None])
    with pytest.warns(UserWarning, match="no metadata fuser"):
        given = nometa.encode_image(images[:2], 1, META, return_token_scores=True)
    assert torch.equal(plain.embedding, given.embedding)
    assert plain.token_scores is not None and plain.token_scores.shape[1] == 196


def test_encode_audio(model: Sat2Sound) -> None:
    torch.manual_seed(2)
    mels = torch.randn(2, 1001, 64) * 10 - 40
    enc = model.encode_audio(mels, return_token_scores=True)
    assert enc.embedding.shape == (2, model.config.codebook_dim)
    assert enc.token_scores is not None and enc.token_scores.shape[1] == model.config.n_audio_frames
    four_d = model.encode_audio(mels[:, None])
    assert torch.allclose(four_d.embedding, enc.embedding, atol=1e-6)
    with pytest.raises(InputError, match=r"\(B, 1001, 64\)"):
        model.encode_audio(torch.zeros(1, 1000, 64))
    with pytest.raises(InputError, match="torch.Tensor"):
        model.encode_audio([[0.0]])  # type: ignore[arg-type]


def test_encode_recording_averages_normalised_window_embeddings(model: Sat2Sound) -> None:
    torch.manual_seed(5)
    mels = torch.randn(5, 1001, 64) * 10 - 40
    mels[3] -= 30  # a quiet window
    each = model.encode_audio(mels)
    rec = model.encode_recording(mels, batch_size=2)  # three batches: 2 + 2 + 1
    assert rec.embedding.shape == (1, model.config.codebook_dim)
    assert rec.codebook_weights.shape == (1, model.config.codebook_size) and rec.token_scores is None
    expected = F.normalize(each.embedding.double(), dim=-1).mean(0, keepdim=True)
    torch.testing.assert_close(rec.embedding.double(), expected, rtol=1e-5, atol=1e-6)
    # the weights are those of that direction: w·C is parallel to the mean embedding, and sum to 1
    assert abs(float(rec.codebook_weights.sum()) - 1.0) < 1e-5
    direction = rec.codebook_weights.double() @ model.fdt.space_dict.double()
    assert float(F.cosine_similarity(direction, rec.embedding.double())) > 1 - 1e-6
    # batching does not matter, and one window gives encode_audio's direction and weights
    torch.testing.assert_close(model.encode_recording(mels, batch_size=16).embedding, rec.embedding,
                               rtol=1e-5, atol=1e-6)
    one = model.encode_recording(mels[:1])
    assert float(F.cosine_similarity(one.embedding, each.embedding[:1])) > 1 - 1e-6
    torch.testing.assert_close(one.codebook_weights, each.codebook_weights[:1], rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="log_mel_windows"):
        model.encode_recording(torch.zeros(1001, 64))
    with pytest.raises(InputError, match="batch_size"):
        model.encode_recording(mels, batch_size=0)


def test_encode_text_states_and_mask_checks(model: Sat2Sound) -> None:
    torch.manual_seed(3)
    hidden = torch.randn(2, 6, model.config.text_dim)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    enc = model.encode_text_states(hidden, mask, return_token_scores=True)
    assert enc.token_valid is not None and torch.equal(enc.token_valid, mask)
    # padding content is ignored (its score is multiplied by 0)
    noisy = hidden.clone()
    noisy[1, 3:] = 100.0
    assert torch.allclose(model.encode_text_states(noisy, mask).embedding, enc.embedding, atol=1e-6)
    ints = model.encode_text_states(hidden, mask.long())
    assert torch.allclose(ints.embedding, enc.embedding)
    with pytest.raises(InputError, match="at least one real token"):
        model.encode_text_states(hidden, torch.zeros(2, 6, dtype=torch.bool))
    with pytest.raises(InputError, match="shape"):
        model.encode_text_states(hidden, mask[:, :5])
    with pytest.raises(InputError, match=r"\(B, L, 24\)"):
        model.encode_text_states(torch.zeros(2, 6, 7), mask)


class _FakeTextEncoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(1, dim)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(t) for t in texts)
        hidden = torch.stack([torch.linspace(-1, 1, length * self.lin.out_features).reshape(length, -1)
                              * (i + 1) for i in range(len(texts))])
        mask = torch.tensor([[j < len(t) for j in range(length)] for t in texts])
        return hidden, mask


def test_encode_text_needs_an_attached_encoder() -> None:
    model = _model()
    with pytest.raises(WeightsError, match="no text encoder"):
        model.encode_text(["birds singing"])
    keys_before = set(model.state_dict())
    encoder = _FakeTextEncoder(model.config.text_dim)
    model.text_encoder = encoder
    assert model.text_encoder is encoder and set(model.state_dict()) == keys_before
    enc = model.encode_text(["birds", "a river"])
    hidden, mask = encoder.encode(["birds", "a river"])
    assert torch.allclose(enc.embedding, model.encode_text_states(hidden, mask).embedding)
    with pytest.raises(InputError, match="non-empty list"):
        model.encode_text([])


def _official_layout(model: Sat2Sound) -> dict[str, torch.Tensor]:
    """The tiny model's weights in the official layout: full qkv and the dead tensors."""
    torch.manual_seed(4)
    cfg = model.config
    sd = dict(model.state_dict())
    stage, block = len(cfg.htsat_depths) - 1, cfg.htsat_depths[-1] - 1
    prefix = f"audio_encoder.model.audio_enc.layers.{stage}.blocks.{block}."
    dim = cfg.audio_frame_dim
    for leaf in ("weight", "bias"):
        v = sd.pop(prefix + f"attn.v_proj.{leaf}")
        qk = torch.randn((2 * dim, *v.shape[1:]))
        sd[prefix + f"attn.qkv.{leaf}"] = torch.cat([qk, v])
    sd[prefix + "mlp.fc1.weight"] = torch.randn(4 * dim, dim)
    sd[prefix + "attn.relative_position_bias_table"] = torch.randn(225, 2)
    sd[prefix + "attn.relative_position_index"] = torch.zeros(64, 64, dtype=torch.int64)
    sd["logit_scale_it_a"] = torch.tensor(2.6)
    sd["audio_encoder.model.audio_enc.tscam_conv.weight"] = torch.randn(3, dim, 2, 3)
    sd["audio_encoder.model.audio_enc.head.bias"] = torch.randn(3)
    sd["audio_encoder.model.audio_enc.audio_feats_extractor.log_trans.melW"] = torch.randn(5, 64)
    sd["audio_encoder.model.audio_enc.bn0.num_batches_tracked"] = torch.tensor(0)
    return sd


def test_convert_official_state_dict_round_trip() -> None:
    source = _model()
    official = _official_layout(source)
    target = _model(name="other")
    with torch.no_grad():
        for p in target.parameters():
            p.zero_()
    converted = target.convert_official_state_dict(official)
    target.load_state_dict(converted, strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    # idempotent on an already-converted state_dict
    assert set(target.convert_official_state_dict(converted)) == set(converted)
    assert set(target.official_keys()) <= set(official)


def test_convert_keeps_unknown_keys_for_the_strict_check() -> None:
    model = _model()
    official = _official_layout(model)
    official["satmae_backbone.backbone.cls_token"] = torch.zeros(1, 1, 32)
    del official["fdt.space_dict"]
    converted = model.convert_official_state_dict(official)
    assert "satmae_backbone.backbone.cls_token" in converted
    with pytest.raises(RuntimeError, match="space_dict"):
        model.load_state_dict(converted, strict=True)


def test_unused_patterns_follow_the_config() -> None:
    tiny = _model()
    patterns = [re.compile(p) for p in tiny.unused_key_patterns()]
    assert any(p.search("audio_encoder.model.audio_enc.layers.1.blocks.1.mlp.fc1.weight") for p in patterns)
    assert not any(p.search("audio_encoder.model.audio_enc.layers.1.blocks.0.mlp.fc1.weight") for p in patterns)
    official = [re.compile(p) for p in Sat2Sound.UNUSED_KEYS_PATTERNS]
    assert any(p.search("audio_encoder.model.audio_enc.layers.3.blocks.1.mlp.fc2.bias") for p in official)
    assert not any(p.search("audio_encoder.model.audio_enc.layers.3.blocks.1.norm2.bias") for p in official)


def test_bf16_precision(images: torch.Tensor) -> None:
    model = _model()
    fp32 = model.encode_image(images, [1, 3, 5], META).embedding
    audio32 = model.encode_audio(torch.randn(1, 1001, 64, generator=torch.Generator().manual_seed(5))).embedding
    with pytest.raises(ConfigError, match="unknown precision"):
        model.set_precision("fp8")
    model.set_precision("bf16")
    assert model.precision == "bf16"
    assert model.satmae_backbone.backbone.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert model.satmae_backbone.backbone.blocks[0].norm1.weight.dtype == torch.float32
    assert model.fdt.space_dict.dtype == torch.float32
    assert model.fdt.img_query_model.q_map[1].weight.dtype == torch.float32
    bf16 = model.encode_image(images, [1, 3, 5], META)
    assert bf16.embedding.dtype == torch.float32 and bf16.codebook_weights.dtype == torch.float32
    assert F.cosine_similarity(bf16.embedding, fp32).min() > 0.99
    audio16 = model.encode_audio(torch.randn(1, 1001, 64, generator=torch.Generator().manual_seed(5))).embedding
    assert F.cosine_similarity(audio16, audio32).min() > 0.99
    with pytest.raises(ConfigError, match="reload"):
        model.set_precision("fp32")
    # the bf16 scoring copy of the codebook follows a new weight load
    fresh = _model(name="fresh")
    with torch.no_grad():
        fresh.fdt.space_dict.mul_(-1)
    model.load_state_dict(fresh.state_dict())
    assert model.fdt.score_codebook is not None
    assert torch.equal(model.fdt.score_codebook, fresh.fdt.space_dict.to(torch.bfloat16))


def test_fused_and_plain_kernels_agree(images: torch.Tensor) -> None:
    from sat2sound_core import accel

    model = _model()
    mels = torch.randn(1, 1001, 64, generator=torch.Generator().manual_seed(6))
    with accel.override(fused_linear=True):
        fused_img = model.encode_image(images[:1], 1, META).embedding
        fused_audio = model.encode_audio(mels).embedding
    with accel.override(fused_linear=False):
        plain_img = model.encode_image(images[:1], 1, META).embedding
        plain_audio = model.encode_audio(mels).embedding
    assert torch.allclose(fused_img, plain_img, atol=1e-5)
    assert torch.allclose(fused_audio, plain_audio, atol=1e-5)


def test_empty_init_has_the_constants_and_loads() -> None:
    source = _model()
    empty = Sat2Sound(source.config, init="empty")
    for key, value in empty.state_dict().items():
        if key.endswith(("relative_position_index", "attn_mask")):
            assert torch.equal(value, source.state_dict()[key]), key
    empty.load_state_dict(source.state_dict(), strict=True)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    assert torch.equal(empty.encode_image(images, 1, META).embedding, source.encode_image(images, 1, META).embedding)
    with pytest.raises(ConfigError, match="init"):
        Sat2Sound(source.config, init="zeros")
