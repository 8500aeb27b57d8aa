"""Provider registry, templates, keys and their redaction, default providers per geometry."""

from __future__ import annotations

import logging

import pytest

import tiles
from tests.tiles.tileserver import TileServer
from tiles import ProviderError, TileFetcher, TileFetchError, XYZProvider
from tiles.fetch import resolve_provider

SECRET = "s3cr3t-KEY-0123456789"


def test_registry_names_and_terms() -> None:
    names = tiles.list_providers()
    assert names == ["azure-maps-imagery", "eox-s2cloudless-2016", "eox-s2cloudless-2020", "esri-world-imagery"]
    eox20 = tiles.get_provider("eox-s2cloudless-2020")
    eox16 = tiles.get_provider("EOX-S2CLOUDLESS-2016")
    assert "CC BY-NC-SA" in eox20.attribution and "2020" in eox20.attribution
    assert "CC BY 4.0" in eox16.attribution and "2016" in eox16.attribution
    assert isinstance(eox20, XYZProvider) and eox20.max_zoom == 14 and "s2cloudless-2020_3857" in eox20.url_template
    assert eox20.url(14, 3, 5).endswith("/g/14/5/3.jpg")  # EOX WMTS: y before x
    esri = tiles.get_provider("esri-world-imagery")
    assert esri.attribution.startswith("Powered by Esri") and "Esri" in esri.attribution
    assert esri.cache_policy == "memory" and esri.disk_opt_in
    assert esri.url(18, 1, 2).endswith("/tile/18/2/1")
    assert eox20.cache_policy == "disk"


def test_default_providers_per_geometry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_provider(None, "bingmap").name == "esri-world-imagery"
    assert resolve_provider(None, "sentinel").name == "eox-s2cloudless-2020"
    with pytest.raises(ProviderError, match="googleEarth .* no free default provider"):
        resolve_provider(None, "googleEarth")


def test_unknown_provider_lists_valid_names() -> None:
    with pytest.raises(ProviderError, match="unknown imagery provider 'bing'.*eox-s2cloudless-2020.*esri-world-imagery"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", "bing")
    with pytest.raises(ProviderError, match="must be a name"):
        tiles.get_provider(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("file:///etc/{z}/{x}/{y}.png", "http or https"),
        ("ftp://host/{z}/{x}/{y}.png", "http or https"),
        ("https://host/{z}/{x}.png", "needs {z}, {x} and {y}"),
        ("https://host/{zoom}/{x}/{y}.png", "unknown placeholder"),
        ("https://host/{z}/{x}/{y}.png?k={key}", "needs key_env"),
        ("", "non-empty"),
    ],
)
def test_bad_templates(template: str, match: str) -> None:
    with pytest.raises(ProviderError, match=match):
        XYZProvider(template, "attr", max_zoom=19)


def test_attribution_and_zoom_are_required() -> None:
    with pytest.raises(ProviderError, match="attribution"):
        XYZProvider("https://h/{z}/{x}/{y}.png", "  ", max_zoom=19)
    with pytest.raises(ProviderError, match="max_zoom"):
        XYZProvider("https://h/{z}/{x}/{y}.png", "a", max_zoom="deep")  # type: ignore[arg-type]


def test_template_fields() -> None:
    p = XYZProvider("https://{s}.h/{z}/{x}/{-y}/{q}.png", "a", max_zoom=19, subdomains="xy")
    assert p.url(3, 3, 5) == "https://x.h/3/3/2/213.png"
    assert p.url(3, 4, 5).startswith("https://y.h/")
    assert p.name == "x.h"
    wmts = XYZProvider("https://h/wmts/layer/default/g/{TileMatrix}/{TileRow}/{TileCol}.jpg", "a", max_zoom=14)
    assert wmts.url(14, 3, 5) == "https://h/wmts/layer/default/g/14/5/3.jpg"


def test_azure_needs_key_and_never_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    azure = tiles.get_provider("azure-maps-imagery")
    with pytest.raises(ProviderError, match="set the environment variable AZURE_MAPS_KEY"):
        tiles.fetch_chip(45.0, 7.0, "bingmap", azure)
    monkeypatch.setenv("AZURE_MAPS_KEY", SECRET)
    url = azure.url(18, 1, 2)
    assert SECRET in url and "tilesetId=microsoft.imagery" in url
    assert SECRET not in repr(azure) and SECRET not in azure.redact(url)
    assert "subscription-key=***" in azure.redact(url)


def test_key_is_redacted_from_errors_and_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fetcher: TileFetcher) -> None:
    monkeypatch.setenv("TEST_TILE_KEY", SECRET)
    with TileServer() as server:
        keyed = XYZProvider(server.url_template + "?api_key={key}", "keyed", max_zoom=19, key_env="TEST_TILE_KEY")
        server.add_fault("500", times=None)
        with caplog.at_level(logging.DEBUG, logger="tiles"), pytest.raises(TileFetchError) as info:
            tiles.fetch_chip(45.0, 7.0, "bingmap", keyed, fetcher=fetcher)
        assert SECRET not in str(info.value) and "api_key=***" in str(info.value)
        assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)
        assert any("retry" in r.getMessage() for r in caplog.records)
        assert all(SECRET in p for p in server.requests)  # the key is really sent to the server
        server.clear_faults()
        server.add_fault("403", times=1)
        with pytest.raises(ProviderError, match=r"HTTP 403.*check the key in TEST_TILE_KEY") as info403:
            tiles.fetch_chip(45.0, 7.0, "bingmap", keyed, fetcher=fetcher)
        assert SECRET not in str(info403.value)


def test_url_template_string_and_local_prefix(server: TileServer, tmp_path) -> None:
    p = tiles.get_provider(server.url_template)
    assert isinstance(p, XYZProvider) and "user-configured" in p.attribution
    with pytest.raises(tiles.LocalSourceError, match="does not exist"):
        tiles.get_provider(f"local:{tmp_path / 'nothing.tif'}")
