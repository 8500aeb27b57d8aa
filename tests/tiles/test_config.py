from __future__ import annotations

from pathlib import Path

import pytest

from sat2sound_core.common.settings import Settings, from_env
from tiles.config import DEFAULT_USER_AGENT, TilesConfig, get_config
from tiles.errors import TilesConfigError


def test_defaults_agree_with_product_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ours = get_config({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    theirs = Settings()
    assert ours.home == theirs.home == tmp_path / "xdg" / "sat2sound"
    assert ours.user_agent == theirs.user_agent == DEFAULT_USER_AGENT
    assert ours.tile_cache is theirs.tile_cache is True
    assert ours.esri_disk_cache is theirs.esri_disk_cache is False
    assert ours.offline is theirs.offline is False
    assert ours.tile_cache_dir == tmp_path / "xdg" / "sat2sound" / "tiles"


def test_same_env_same_values(tmp_path: Path) -> None:
    env = {
        "SAT2SOUND_HOME": str(tmp_path / "h"),
        "SAT2SOUND_USER_AGENT": "tester/1.0",
        "SAT2SOUND_TILE_CACHE": "no",
        "SAT2SOUND_ESRI_DISK_CACHE": "yes",
        "SAT2SOUND_OFFLINE": "on",
    }
    ours, theirs = get_config(env), from_env(env)
    assert (ours.home, ours.user_agent, ours.tile_cache, ours.esri_disk_cache, ours.offline) == (
        theirs.home,
        theirs.user_agent,
        theirs.tile_cache,
        theirs.esri_disk_cache,
        theirs.offline,
    )


def test_bad_boolean_names_variable() -> None:
    with pytest.raises(TilesConfigError, match="SAT2SOUND_TILE_CACHE"):
        get_config({"SAT2SOUND_TILE_CACHE": "maybe"})


def test_home_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert get_config({}).home == Path.home() / ".cache" / "sat2sound"
    assert isinstance(get_config({}), TilesConfig)


def test_tiles_never_imports_sat2sound_core() -> None:
    import subprocess
    import sys

    code = "import sys, tiles, tiles.fetch, tiles.local; assert 'sat2sound_core' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_custom_provider_is_parsed_once_and_validated() -> None:
    from tiles.config import DEFAULT_CUSTOM_ATTRIBUTION, custom_provider_config

    assert custom_provider_config({}) is None
    assert custom_provider_config({"SAT2SOUND_TILE_URL": "  "}) is None
    cfg = custom_provider_config({"SAT2SOUND_TILE_URL": " http://127.0.0.1:9/{z}/{x}/{y}.png "})
    assert cfg is not None and cfg.url == "http://127.0.0.1:9/{z}/{x}/{y}.png"
    assert (cfg.attribution, cfg.max_zoom) == (DEFAULT_CUSTOM_ATTRIBUTION, 19)
    provider = cfg.provider()
    assert (provider.name, provider.max_zoom, provider.attribution) == ("custom", 19, DEFAULT_CUSTOM_ATTRIBUTION)
    cfg = custom_provider_config({"SAT2SOUND_TILE_URL": "http://h/{z}/{x}/{y}.png",
                                  "SAT2SOUND_TILE_ATTRIBUTION": "© me", "SAT2SOUND_TILE_MAX_ZOOM": "20.0"})
    assert cfg is not None and (cfg.attribution, cfg.max_zoom) == ("© me", 20)


@pytest.mark.parametrize("zoom", ["nineteen", "19.5", "-1", "25", "nan"])
def test_bad_custom_max_zoom_is_a_tiles_error_naming_the_fix(zoom: str) -> None:
    from tiles.config import custom_provider_config

    with pytest.raises(TilesConfigError, match=r"SAT2SOUND_TILE_MAX_ZOOM=.*whole number from 0 to 24"):
        custom_provider_config({"SAT2SOUND_TILE_URL": "http://h/{z}/{x}/{y}.png", "SAT2SOUND_TILE_MAX_ZOOM": zoom})


@pytest.mark.parametrize(("url", "hint"), [("http://h/tile.png", r"\{z\}, \{x\} and \{y\}"),
                                           ("ftp://h/{z}/{x}/{y}.png", "http or https")])
def test_bad_custom_template_is_a_tiles_error_naming_the_fix(url: str, hint: str) -> None:
    from tiles.config import custom_provider_config

    with pytest.raises(TilesConfigError, match=f"SAT2SOUND_TILE_URL.*{hint}"):
        custom_provider_config({"SAT2SOUND_TILE_URL": url})
