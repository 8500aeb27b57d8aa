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
