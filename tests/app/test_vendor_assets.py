"""Vendoring the map's JS/CSS: integrity is checked and only the listed files are extracted."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import folium
import pytest

from app import vendor_assets
from app.vendor_assets import NpmAsset


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_extract_writes_listed_files_only(tmp_path: Path) -> None:
    data = _tarball({"dist/a.js": b"var a;", "dist/b.css": b"p{}", "src/secret.js": b"x"})
    asset = NpmAsset("pkg", "1.0.0", _integrity(data), {"dist/a.js": "pkg/a.js", "dist/b.css": "pkg/b.css"}, {})
    vendor_assets.verify_integrity(data, asset.integrity)
    written = vendor_assets.extract(asset, data, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == ["pkg/a.js", "pkg/b.css"]
    assert (tmp_path / "pkg/a.js").read_bytes() == b"var a;"
    assert not list(tmp_path.rglob("secret.js")) and not list(tmp_path.rglob(".tmp-*"))
    assert not list(tmp_path.rglob("*.tmp"))  # the temp files of sat2sound_core.common.files


def test_vendored_files_are_readable_by_the_server(tmp_path: Path) -> None:
    import os
    import stat

    data = _tarball({"dist/a.js": b"var a;"})
    asset = NpmAsset("pkg", "1.0.0", _integrity(data), {"dist/a.js": "pkg/a.js"}, {})
    old = os.umask(0o022)
    try:
        (path,) = vendor_assets.extract(asset, data, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_registry_mirror_comes_from_the_app_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import npm_registry

    assert npm_registry({}) == "https://registry.npmjs.org"
    assert npm_registry({"NPM_CONFIG_REGISTRY": "http://mirror.local/npm/"}) == "http://mirror.local/npm"
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://mirror.local/npm/")
    leaflet = next(a for a in vendor_assets.ASSETS if a.name == "leaflet")
    assert leaflet.tarball_url == "http://mirror.local/npm/leaflet/-/leaflet-1.9.3.tgz"


def test_tampered_tarball_is_refused() -> None:
    data = _tarball({"dist/a.js": b"var a;"})
    with pytest.raises(ValueError, match="integrity mismatch"):
        vendor_assets.verify_integrity(data + b"x", _integrity(data))
    with pytest.raises(vendor_assets.AssetError, match="NPM_CONFIG_REGISTRY"):  # a product error naming the fix
        vendor_assets.verify_integrity(data + b"x", _integrity(data))


def test_missing_member_is_named(tmp_path: Path) -> None:
    data = _tarball({"dist/a.js": b"1"})
    asset = NpmAsset("pkg", "1.0.0", _integrity(data), {"dist/nope.js": "pkg/nope.js"}, {})
    with pytest.raises(ValueError, match="dist/nope.js"):
        vendor_assets.extract(asset, data, tmp_path)


def test_registry_urls_and_folium_versions_match() -> None:
    urls = {a.name: a.tarball_url for a in vendor_assets.ASSETS}
    assert urls["leaflet"] == "https://registry.npmjs.org/leaflet/-/leaflet-1.9.3.tgz"
    # the CDN URLs we replace are exactly the ones this folium asks for (else the map would go to a CDN)
    needed = {u for _, u in folium.Map.default_js + folium.Map.default_css}
    replaced = set(vendor_assets.cdn_map())
    assert {u for u in needed if "leaflet@" in u or "jquery" in u or "bootstrap@5" in u} <= replaced
