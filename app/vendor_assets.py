"""Fetch the map's JavaScript and CSS from the npm registry so the app works without a CDN.

folium asks the browser to load Leaflet, jQuery and Bootstrap from public CDNs. An air-gapped machine
(or a headless test browser with no internet) would then show a blank map. This script downloads the
exact npm package versions folium names, checks each tarball against the registry's pinned sha512
integrity, and extracts the few files the map needs into ``app/static/vendor/`` (git-ignored), which
Streamlit serves at ``/app/static/vendor/...`` (``enableStaticServing`` in ``.streamlit/config.toml``).
``app.map_view`` rewrites folium's CDN URLs to these local copies.

Run it once (the Makefile does): ``python app/vendor_assets.py``. It is idempotent and quick when the
files are already present. Set ``NPM_CONFIG_REGISTRY`` to use a registry mirror
(:func:`app.config.npm_registry`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # `python app/vendor_assets.py` puts app/ (not the repo) on sys.path
    sys.path.insert(0, str(_REPO))

from app.config import npm_registry  # noqa: E402
from sat2sound_core.common.errors import DownloadError  # noqa: E402
from sat2sound_core.common.files import write_bytes  # noqa: E402

log = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"


class AssetError(DownloadError, ValueError):
    """A downloaded npm tarball is not the pinned one (integrity) or lacks a file the map needs."""


@dataclass(frozen=True)
class NpmAsset:
    """One npm package version, its registry integrity, and which of its files the map needs.

    ``files`` maps a path inside the tarball (below ``package/``) to a path below ``VENDOR_DIR``;
    ``cdn`` maps each CDN URL folium uses to the vendored file that replaces it.
    """

    name: str
    version: str
    integrity: str
    files: dict[str, str]
    cdn: dict[str, str]

    @property
    def tarball_url(self) -> str:
        registry = npm_registry()
        base = self.name.split("/")[-1]
        return f"{registry}/{self.name}/-/{base}-{self.version}.tgz"


_LEAFLET_IMAGES = ("layers.png", "layers-2x.png", "marker-icon.png", "marker-icon-2x.png", "marker-shadow.png")

ASSETS: tuple[NpmAsset, ...] = (
    NpmAsset(
        name="leaflet",
        version="1.9.3",
        integrity="sha512-iB2cR9vAkDOu5l3HAay2obcUHZ7xwUBBjph8+PGtmW/2lYhbLizWtG7nTeYht36WfOslixQF9D/uSIzhZgGMfQ==",
        files={
            "dist/leaflet.js": "leaflet/leaflet.js",
            "dist/leaflet.css": "leaflet/leaflet.css",
            **{f"dist/images/{n}": f"leaflet/images/{n}" for n in _LEAFLET_IMAGES},
        },
        cdn={
            "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js": "leaflet/leaflet.js",
            "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css": "leaflet/leaflet.css",
        },
    ),
    NpmAsset(
        name="jquery",
        version="3.7.1",
        integrity="sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
        files={"dist/jquery.min.js": "jquery/jquery.min.js"},
        cdn={"https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js"},
    ),
    NpmAsset(
        name="bootstrap",
        version="5.2.2",
        integrity="sha512-dEtzMTV71n6Fhmbg4fYJzQsw1N29hJKO1js5ackCgIpDcGid2ETMGC6zwSYw09v05Y+oRdQ9loC54zB1La3hHQ==",
        files={
            "dist/js/bootstrap.bundle.min.js": "bootstrap/bootstrap.bundle.min.js",
            "dist/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
        },
        cdn={
            "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/js/bootstrap.bundle.min.js": (
                "bootstrap/bootstrap.bundle.min.js"
            ),
            "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
        },
    ),
)


def cdn_map() -> dict[str, str]:
    """CDN URL -> vendored path (relative to ``VENDOR_DIR``) for every URL this module replaces."""
    out: dict[str, str] = {}
    for asset in ASSETS:
        out.update(asset.cdn)
    return out


def missing_files(vendor_dir: Path = VENDOR_DIR) -> list[Path]:
    """Vendored files that are not on disk yet (empty when the map can be served offline)."""
    return [vendor_dir / dest for a in ASSETS for dest in a.files.values() if not (vendor_dir / dest).is_file()]


def verify_integrity(data: bytes, integrity: str) -> None:
    """Raise :class:`AssetError` unless ``data`` matches an npm ``sha512-<base64>`` integrity string."""
    algo, _, expected = integrity.partition("-")
    if algo != "sha512":
        raise AssetError(f"unsupported integrity algorithm {algo!r}; pin the asset with its sha512 integrity")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise AssetError(
            f"integrity mismatch: expected sha512-{expected}, got sha512-{actual}; the registry "
            "(NPM_CONFIG_REGISTRY) served another file: use the official registry or a faithful mirror"
        )


def extract(asset: NpmAsset, tarball: bytes, vendor_dir: Path = VENDOR_DIR) -> list[Path]:
    """Write the files ``asset`` needs from ``tarball`` into ``vendor_dir`` atomically; return them."""
    written: list[Path] = []
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        for src, dest in asset.files.items():
            member = members.get(f"package/{src}")
            if member is None:
                raise AssetError(
                    f"{asset.name}@{asset.version} has no file {src}; fix its entry in app/vendor_assets.ASSETS"
                )
            fh = tar.extractfile(member)
            assert fh is not None
            # readable by the server whatever serves it (0644 under the usual umask)
            written.append(write_bytes(vendor_dir / dest, fh.read(), mode=0o644))
    return written


def fetch(url: str, timeout: float = 60.0) -> bytes:
    """GET ``url`` (HTTPS, registry only) and return the body."""
    req = urllib.request.Request(url, headers={"User-Agent": "sat2sound-map vendor_assets"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return bytes(resp.read())


def ensure_assets(vendor_dir: Path = VENDOR_DIR) -> list[Path]:
    """Download and extract every asset whose files are missing; return the files written."""
    written: list[Path] = []
    for asset in ASSETS:
        if all((vendor_dir / d).is_file() for d in asset.files.values()):
            continue
        log.info("fetching %s@%s from %s", asset.name, asset.version, asset.tarball_url)
        data = fetch(asset.tarball_url)
        verify_integrity(data, asset.integrity)
        written += extract(asset, data, vendor_dir)
    return written


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = ensure_assets()
    except (OSError, ValueError) as exc:
        print(
            f"Could not fetch the map's JavaScript/CSS from the npm registry: {exc}\n"
            "Check the network or set NPM_CONFIG_REGISTRY to a reachable mirror, then rerun "
            "`python app/vendor_assets.py`.",
            file=sys.stderr,
        )
        return 1
    print(f"vendored map assets in {VENDOR_DIR} ({len(written)} files written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
