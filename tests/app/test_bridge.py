"""Provider choices and basemaps: attribution always present, API keys never sent to the browser."""

from __future__ import annotations

import pytest

from app import bridge, config


def test_choices_list_auto_the_registry_and_the_custom_template() -> None:
    plain = bridge.provider_choices(config.from_env({}))
    assert list(plain)[0] == bridge.AUTO and "esri-world-imagery" in plain and bridge.CUSTOM not in plain
    assert "Powered by Esri" in plain["esri-world-imagery"].terms
    custom = bridge.provider_choices(config.from_env({"SAT2SOUND_TILE_URL": "http://127.0.0.1:1/{z}/{x}/{y}.png",
                                                      "SAT2SOUND_TILE_ATTRIBUTION": "my tiles"}))
    assert list(custom)[0] == bridge.CUSTOM and custom[bridge.CUSTOM].terms == "my tiles"


@pytest.mark.parametrize(
    ("choice", "checkpoint", "expected"),
    [
        (bridge.AUTO, "bingmap_withmeta", "esri-world-imagery"),
        (bridge.AUTO, "sentinel_nometa", "eox-s2cloudless-2020"),
        ("eox-s2cloudless-2016", "bingmap_nometa", "eox-s2cloudless-2016"),
        # keyed provider: the browser gets a keyless basemap, the key stays on the server
        ("azure-maps-imagery", "bingmap_withmeta", "esri-world-imagery"),
        # no default imagery for SoundingEarth: a keyless display basemap
        (bridge.AUTO, "SoundingEarth_withmeta", "esri-world-imagery"),
    ],
)
def test_basemap_for_the_browser(choice: str, checkpoint: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_MAPS_KEY", "secret-key-123")
    bm = bridge.basemap(config.from_env({}), choice, checkpoint)
    assert bm.name == expected
    assert bm.attribution and "{key}" not in bm.url and "secret-key-123" not in bm.url
    assert all(k in bm.url for k in ("{z}", "{x}", "{y}"))


def test_custom_basemap_is_the_configured_template() -> None:
    cfg = config.from_env({"SAT2SOUND_TILE_URL": "http://127.0.0.1:1/{z}/{x}/{y}.png"})
    bm = bridge.basemap(cfg, bridge.CUSTOM, "bingmap_withmeta")
    assert bm.url == cfg.tile_url and bm.attribution == cfg.tile_attribution
    assert bridge.engine_provider(bridge.CUSTOM) is None and bridge.engine_provider(bridge.AUTO) is None
    assert bridge.engine_provider("esri-world-imagery") == "esri-world-imagery"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/{z}/{x}/{y}.png?api_key=SECRET-99",
        "https://tiles.example/{z}/{x}/{y}.jpg?access_token=SECRET-99&style=sat",
        "http://user:SECRET-99@127.0.0.1:1/{z}/{x}/{y}.png",
        "http://127.0.0.1:1/{z}/{x}/{y}.png?style=SECRET-99",  # any value could be a token
    ],
)
def test_a_keyed_custom_template_never_reaches_the_browser(url: str) -> None:
    from app.map_view import build_map

    cfg = config.from_env({"SAT2SOUND_TILE_URL": url})
    assert not bridge.browser_safe_template(cfg.tile_url)
    bm = bridge.basemap(cfg, bridge.CUSTOM, "bingmap_withmeta")
    assert bm.name == bridge.DISPLAY_FALLBACK and "SECRET-99" not in bm.url
    assert "SAT2SOUND_TILE_URL" in bm.notice and "SECRET-99" not in bm.notice
    html = build_map(bm).get_root().render()
    assert "SECRET-99" not in html and "arcgisonline" in html


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/{z}/{x}/{y}.png", "http://127.0.0.1:1/tiles?z={z}&x={x}&y={y}"]
)
def test_a_keyless_custom_template_is_shown_as_is(url: str) -> None:
    assert bridge.browser_safe_template(url)
    bm = bridge.basemap(config.from_env({"SAT2SOUND_TILE_URL": url}), bridge.CUSTOM, "bingmap_withmeta")
    assert bm.url == url and bm.notice == ""


def test_a_refused_template_is_not_echoed_with_its_key() -> None:
    from sat2sound_core.common.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config.from_env({"SAT2SOUND_TILE_URL": "http://u:PW-SECRET@127.0.0.1:1/{q}.png?key=K-SECRET"})
    assert "SECRET" not in str(err.value) and "{z}" in str(err.value)
