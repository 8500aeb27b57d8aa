"""ModelConfig: official defaults, derived sizes, validation, imagery constants."""

from __future__ import annotations

import pytest

from sat2sound_core.common.errors import ConfigError
from sat2sound_core.model.config import (
    ALLOWED_SCALES,
    GSD,
    SOURCE_SIZE,
    TILE_SIZE,
    ModelConfig,
    metadata_tokens_for,
)


def test_official_defaults_and_derived_sizes() -> None:
    cfg = ModelConfig()
    assert (cfg.vit_dim, cfg.vit_depth, cfg.vit_heads, cfg.vit_mlp_dim) == (768, 12, 12, 3072)
    assert (cfg.fc_dim, cfg.codebook_size, cfg.codebook_dim, cfg.text_dim) == (1024, 16000, 1024, 1024)
    assert cfg.n_image_tokens == 196
    assert cfg.htsat_freq_ratio == 4 and cfg.htsat_final_grid == 8 and cfg.n_audio_frames == 32
    assert cfg.audio_frame_dim == 768
    assert cfg.metadata_tokens == ["asource", "tsource", "latlong", "month", "time"]
    assert cfg.gsd == 0.6 and cfg.allowed_scales == (1, 3, 5)


@pytest.mark.parametrize(
    ("metadata_type", "tokens"),
    [
        ("latlong_month_time_asource_tsource", ("asource", "tsource", "latlong", "month", "time")),
        ("latlong_month_time_tsource", ("tsource", "latlong", "month", "time")),
        ("none", ()),
        ("time_latlong", ("latlong", "time")),
    ],
)
def test_metadata_tokens_are_in_model_order(metadata_type: str, tokens: tuple[str, ...]) -> None:
    assert metadata_tokens_for(metadata_type) == tokens
    assert ModelConfig.tiny(metadata_type=metadata_type).has_metadata == bool(tokens)


def test_imagery_constants() -> None:
    assert GSD == {"sentinel": 10.0, "bingmap": 0.6, "googleEarth": 0.2}
    assert TILE_SIZE == {"bingmap": 300, "sentinel": 256, "googleEarth": 256}
    assert SOURCE_SIZE == {"bingmap": 1500, "sentinel": 1280, "googleEarth": 1024}
    assert ALLOWED_SCALES["googleEarth"] == (1,) and ALLOWED_SCALES["sentinel"] == (1, 3, 5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sat_type": "landsat"}, "sat_type"),
        ({"metadata_type": "latlong_weather"}, "weather"),
        ({"audio_frame_dim": 512}, "audio_frame_dim"),
        ({"htsat_heads": (4, 8, 16)}, "htsat_heads"),
        ({"img_size": 225}, "patch_size"),
    ],
)
def test_invalid_configs_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig().replace(**changes)


def test_tiny_keeps_input_shapes() -> None:
    tiny = ModelConfig.tiny(sat_type="sentinel")
    assert (tiny.img_size, tiny.mel_frames, tiny.mel_bins) == (224, 1001, 64)
    assert tiny.sat_type == "sentinel" and tiny.codebook_size < 1000
