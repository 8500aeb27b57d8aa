"""The product's door to tiles: provider descriptions, the custom template, tiles errors re-raised."""

from __future__ import annotations

import pytest

from sat2sound_core import imagery
from sat2sound_core.common.errors import ConfigError, ImageryError


def test_providers_are_described_without_provider_objects() -> None:
    names = [p.name for p in imagery.list_providers()]
    assert names[:3] == ["eox-s2cloudless-2020", "eox-s2cloudless-2016", "esri-world-imagery"]
    esri = imagery.provider_info("esri-world-imagery")
    assert esri.url_template and "{z}" in esri.url_template and not esri.needs_key and esri.max_zoom > 0
    assert "Esri" in esri.attribution
    assert imagery.provider_info("azure-maps-imagery").needs_key
    assert imagery.default_provider("sentinel") == "eox-s2cloudless-2020"
    assert imagery.default_provider("googleEarth") is None
    with pytest.raises(ImageryError, match="unknown imagery provider 'nope'; valid names: azure"):
        imagery.get_provider("nope")


def test_the_custom_template_is_parsed_once_and_validated() -> None:
    assert imagery.custom_tiles({}) is None
    assert imagery.custom_provider({}) is None
    custom = imagery.custom_tiles({"SAT2SOUND_TILE_URL": " http://127.0.0.1:1/{z}/{x}/{y}.png "})
    assert custom is not None and custom.url == "http://127.0.0.1:1/{z}/{x}/{y}.png"
    assert "SAT2SOUND_TILE_ATTRIBUTION" in custom.attribution and custom.max_zoom == 19
    provider = imagery.custom_provider({"SAT2SOUND_TILE_URL": "http://127.0.0.1:1/{z}/{x}/{y}.png",
                                        "SAT2SOUND_TILE_ATTRIBUTION": "mine", "SAT2SOUND_TILE_MAX_ZOOM": "21"})
    assert provider is not None and (provider.name, provider.attribution, provider.max_zoom) == ("custom", "mine", 21)
    with pytest.raises(ConfigError, match=r"needs \{z\}, \{x\} and \{y\}"):
        imagery.custom_tiles({"SAT2SOUND_TILE_URL": "http://127.0.0.1:1/tile.png"})
    for bad in ("19.5", "-1", "99", "deep"):
        with pytest.raises(ConfigError, match="SAT2SOUND_TILE_MAX_ZOOM"):
            imagery.custom_tiles({"SAT2SOUND_TILE_URL": "http://h/{z}/{x}/{y}.png", "SAT2SOUND_TILE_MAX_ZOOM": bad})
    with pytest.raises(ConfigError, match="http or https"):
        imagery.custom_provider({"SAT2SOUND_TILE_URL": "ftp://h/{z}/{x}/{y}.png"})
