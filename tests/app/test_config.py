"""App-only environment variables are validated with messages that name the fix."""

from __future__ import annotations

import pytest

from app import config
from sat2sound_core.common.errors import ConfigError


def test_defaults() -> None:
    cfg = config.from_env({})
    assert cfg.checkpoint == "bingmap_withmeta"
    assert not cfg.custom_tiles
    assert set(config.CHECKPOINTS) == {
        "bingmap_withmeta", "bingmap_nometa", "sentinel_withmeta", "sentinel_nometa",
        "SoundingEarth_withmeta", "SoundingEarth_nometa",
    }


def test_custom_tiles_need_a_template_and_get_an_attribution() -> None:
    cfg = config.from_env({"SAT2SOUND_TILE_URL": "http://127.0.0.1:9/{z}/{x}/{y}.png"})
    assert cfg.custom_tiles and "SAT2SOUND_TILE_ATTRIBUTION" in cfg.tile_attribution
    with pytest.raises(ConfigError, match=r"\{z\}, \{x\} and \{y\}"):
        config.from_env({"SAT2SOUND_TILE_URL": "http://127.0.0.1:9/tile.png"})


def test_numbers_are_checked() -> None:
    with pytest.raises(ConfigError, match="SAT2SOUND_APP_START_LAT"):
        config.from_env({"SAT2SOUND_APP_START_LAT": "north"})
    with pytest.raises(ConfigError, match="between 1 and 50"):
        config.from_env({"SAT2SOUND_APP_TOP_K": "0"})
    assert config.from_env({"SAT2SOUND_APP_CHECKPOINT": "/tmp/x.ckpt"}).checkpoint == "/tmp/x.ckpt"


@pytest.mark.parametrize(("raw", "delay"), [(None, 3.0), ("0.5", 0.5), ("0", 0.0), ("off", None), ("-1", None),
                                            ("soon", 3.0)])
def test_warmup_delay(raw: str | None, delay: float | None) -> None:
    env = {} if raw is None else {"SAT2SOUND_APP_WARMUP_DELAY": raw}
    assert config.warmup_delay(env) == delay
    assert config.from_env(env).warmup_delay == delay


def test_custom_tiles_are_read_by_tiles_config() -> None:
    cfg = config.from_env({"SAT2SOUND_TILE_URL": "http://127.0.0.1:9/{z}/{x}/{y}.png", "SAT2SOUND_TILE_MAX_ZOOM": "18"})
    assert cfg.tile_max_zoom == 18
    with pytest.raises(ConfigError, match="SAT2SOUND_TILE_MAX_ZOOM"):
        config.from_env({"SAT2SOUND_TILE_URL": "http://127.0.0.1:9/{z}/{x}/{y}.png", "SAT2SOUND_TILE_MAX_ZOOM": "x"})
    with pytest.raises(ConfigError, match="the map can show"):  # a quadkey template: fine for chips, not for Leaflet
        config.from_env({"SAT2SOUND_TILE_URL": "http://127.0.0.1:9/{q}.png"})
