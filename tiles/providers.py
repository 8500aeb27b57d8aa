"""Imagery providers behind one interface: URL template or file, max zoom, attribution, cache policy.

Two kinds exist. A :class:`TileSource` serves web-mercator XYZ tiles (:class:`XYZProvider` over HTTP,
:class:`MBTilesProvider` from an MBTiles file); chips are mosaicked from its tiles. A
:class:`LocalRasterProvider` is a GeoTIFF/COG (or a folder of them) read with rasterio and reprojected
to the chip geometry. :func:`get_provider` resolves registry names (:func:`list_providers`), paths and
provider objects. Cache policies follow each provider's terms: EOX tiles may be kept on disk, Esri World
Imagery only in memory for the session unless ``SAT2SOUND_ESRI_DISK_CACHE`` opts in, Azure Maps only in
memory. API keys are read from the environment when a URL is built and are redacted from every repr,
log line and error message.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import xyzservices
import xyzservices.providers as xyz

from tiles.config import AZURE_KEY_ENV, TilesConfig, env_key
from tiles.errors import LocalSourceError, ProviderError
from tiles.mercator import quadkey
from tiles.redact import redact_url_text, remember_secret

CACHE_POLICIES = ("disk", "memory", "none")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_KNOWN_FIELDS = {"z", "x", "y", "-y", "q", "s", "key"}
# WMTS RESTful templates (GoogleMapsCompatible tile matrix set) use these names for z, x, y.
_WMTS_ALIASES = {"{TileMatrix}": "{z}", "{TileCol}": "{x}", "{TileRow}": "{y}"}
_USERINFO_RE = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://)([^/?#@]*)@")


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(``url`` without ``user:pass@``, (user, password) or None). The password is remembered as a secret."""
    match = _USERINFO_RE.match(url)
    if match is None:
        return url, None
    user, _, password = match.group(2).partition(":")
    auth = (unquote(user), unquote(password))
    remember_secret(auth[1])
    return match.group(1) + url[match.end():], auth


def host_of(url: str) -> str:
    """``host[:port]`` of ``url`` without any userinfo (for names and attributions)."""
    parts = urlsplit(url.replace("{s}", "a"))
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


class Provider:
    """Common fields of every provider: ``name``, ``attribution`` (show it wherever pixels are shown),
    ``max_zoom``, ``notes`` (terms in a sentence) and the base ``cache_policy`` (disk, memory or none)."""

    name: str
    attribution: str
    max_zoom: int
    notes: str = ""
    cache_policy: str = "disk"
    disk_opt_in: bool = False  # memory-only by terms unless the user opts in (SAT2SOUND_ESRI_DISK_CACHE)

    def effective_cache_policy(self, config: TilesConfig) -> str:
        """The cache actually used under ``config``: disk only where terms and settings both allow it."""
        policy = self.cache_policy
        if policy == "memory" and self.disk_opt_in and config.esri_disk_cache:
            policy = "disk"
        if policy == "disk" and not config.tile_cache:
            policy = "memory"
        return policy

    def redact(self, text: str) -> str:
        """``text`` with any secret of this provider replaced by ``***`` (identity when keyless)."""
        return text


class TileSource(Provider):
    """A provider of web-mercator XYZ tiles (256 px by default; 512-px tile sets are supported).

    ``placeholder_hashes`` are sha256 hex digests of the provider's "no imagery here" tile bodies;
    ``uniform_is_placeholder`` treats single-colour tiles as such; ``repeats_are_placeholders`` treats a
    tile body repeated at three or more places of one chip as a placeholder (true for high-resolution
    aerial sources, where identical tiles never occur naturally); ``grey_small_is_placeholder`` treats a
    small body (under 8 KB) whose pixels are all grey (no colour) as one — Esri's "Map data not yet
    available" tile is a grey image of about 2.5 KB, real aerial tiles are larger and coloured.
    """

    min_zoom: int = 0
    tile_size: int = 256
    placeholder_hashes: frozenset[str] = frozenset()
    uniform_is_placeholder: bool = False
    repeats_are_placeholders: bool = False
    grey_small_is_placeholder: bool = False
    remote: bool = True

    @property
    def cache_key(self) -> str:
        """A file-name-safe identifier of the tile set (name + digest of its keyless template)."""
        raise NotImplementedError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "provider"


class XYZProvider(TileSource):
    """Tiles from an http(s) URL template with ``{z}``, ``{x}``, ``{y}`` (or ``{-y}`` for TMS rows; WMTS
    RESTful ``{TileMatrix}``/``{TileCol}``/``{TileRow}`` of a GoogleMapsCompatible matrix set are accepted
    too) or ``{q}`` (Bing-style quadkey), optionally ``{s}`` (one of ``subdomains``) and ``{key}`` (filled from the
    environment variable ``key_env`` when a URL is built; the key never appears in reprs or logs).

    ``attribution`` is required and shown wherever the imagery is; ``max_zoom`` is the deepest zoom the
    server has real imagery for. Other keywords set the cache policy and placeholder detection.
    """

    def __init__(
        self,
        url_template: str,
        attribution: str,
        max_zoom: int,
        name: str | None = None,
        *,
        min_zoom: int = 0,
        tile_size: int = 256,
        subdomains: str | Iterable[str] = "abc",
        key_env: str | None = None,
        cache_policy: str = "disk",
        disk_opt_in: bool = False,
        placeholder_hashes: Iterable[str] = (),
        uniform_is_placeholder: bool = False,
        repeats_are_placeholders: bool = False,
        grey_small_is_placeholder: bool = False,
        notes: str = "",
    ) -> None:
        if not isinstance(url_template, str) or not url_template.strip():
            raise ProviderError("url_template must be a non-empty http(s) URL template with {z}/{x}/{y}.")
        url_template, self.auth = split_userinfo(url_template.strip())
        for alias, field in _WMTS_ALIASES.items():
            url_template = url_template.replace(alias, field)
        scheme = urlsplit(url_template.replace("{s}", "a")).scheme.lower()
        if scheme not in ("http", "https"):
            raise ProviderError(
                f"tile URL templates must use http or https, not {scheme or 'no scheme'!r}: "
                f"{self._redact_template(url_template)}. For a local file use tiles.LocalProvider(path)."
            )
        fields = set(_PLACEHOLDER_RE.findall(url_template))
        unknown = fields - _KNOWN_FIELDS
        if unknown:
            raise ProviderError(
                f"unknown placeholder(s) {sorted(unknown)} in the tile URL template; use {{z}}, {{x}}, {{y}} "
                "(or {-y}), {q}, {s} and {key}."
            )
        if not ({"z", "x"} <= fields and fields & {"y", "-y"}) and "q" not in fields:
            raise ProviderError(
                "the tile URL template needs {z}, {x} and {y} (or {q} for a quadkey), e.g. "
                "https://example.com/tiles/{z}/{x}/{y}.jpg"
            )
        if "key" in fields and not key_env:
            raise ProviderError("a template with {key} needs key_env, the environment variable holding the key.")
        if not isinstance(attribution, str) or not attribution.strip():
            raise ProviderError("every imagery provider needs an attribution string (its terms require one).")
        try:
            max_zoom = int(max_zoom)
        except (TypeError, ValueError):
            raise ProviderError(f"max_zoom must be an integer, got {max_zoom!r}.") from None
        if not 0 <= max_zoom <= 24:
            raise ProviderError(f"max_zoom must be between 0 and 24, got {max_zoom}.")
        if tile_size not in (256, 512):
            raise ProviderError(f"tile_size must be 256 or 512, got {tile_size}.")
        if cache_policy not in CACHE_POLICIES:
            raise ProviderError(f"cache_policy must be one of {', '.join(CACHE_POLICIES)}, got {cache_policy!r}.")
        self.url_template = url_template
        self.attribution = attribution.strip()
        self.max_zoom = max_zoom
        self.min_zoom = int(min_zoom)
        self.tile_size = tile_size
        self.subdomains = list(subdomains) or ["a"]
        self.key_env = key_env
        self.cache_policy = cache_policy
        self.disk_opt_in = disk_opt_in
        self.placeholder_hashes = frozenset(h.lower() for h in placeholder_hashes)
        self.uniform_is_placeholder = uniform_is_placeholder
        self.repeats_are_placeholders = repeats_are_placeholders
        self.grey_small_is_placeholder = grey_small_is_placeholder
        self.notes = notes
        self.name = name or host_of(url_template.replace("{s}", self.subdomains[0])) or "xyz"

    @staticmethod
    def _redact_template(template: str) -> str:
        return redact_url_text(template)

    @property
    def cache_key(self) -> str:
        digest = hashlib.sha256(self.url_template.encode()).hexdigest()[:10]
        return f"{_slug(self.name)}-{digest}"

    def _key(self) -> str:
        assert self.key_env is not None
        key = env_key(self.key_env)
        if key is None:
            raise ProviderError(
                f"{self.name} needs an API key: set the environment variable {self.key_env} "
                "(it is read from the environment only and never logged)."
            )
        remember_secret(key)
        return key

    def check_ready(self) -> None:
        """Raise :class:`ProviderError` now if a needed key is missing (before any request is made)."""
        if self.key_env:
            self._key()

    def url(self, z: int, x: int, y: int) -> str:
        """The request URL of tile (z, x, y), key included. Never log it; log ``redact(url)``."""
        values = {
            "z": str(z),
            "x": str(x),
            "y": str(y),
            "-y": str((1 << z) - 1 - y),
            "q": quadkey(x, y, z),
            "s": self.subdomains[(x + y) % len(self.subdomains)],
        }
        if self.key_env:
            values["key"] = self._key()
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.url_template)

    def redact(self, text: str) -> str:
        if self.key_env:
            key = env_key(self.key_env)
            if key:
                text = text.replace(key, "***")
        return self._redact_template(text)

    def __repr__(self) -> str:
        return f"XYZProvider(name={self.name!r}, url_template={self._redact_template(self.url_template)!r}, max_zoom={self.max_zoom})"


class MBTilesProvider(TileSource):
    """Tiles read from a local MBTiles file (SQLite, TMS rows) with :mod:`sqlite3`; never cached again."""

    remote = False
    cache_policy = "none"

    def __init__(self, path: str | Path, attribution: str | None = None, name: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self._local = threading.local()
        try:
            conn = self._connect()
            meta = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
            zmin, zmax = conn.execute("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise LocalSourceError(
                f"cannot read {self.path} as MBTiles ({exc}); check that it is an MBTiles (SQLite) file."
            ) from None
        if zmax is None:
            raise LocalSourceError(f"MBTiles file {self.path} holds no tiles.")
        self.min_zoom, self.max_zoom = int(zmin), int(zmax)
        self.name = name or meta.get("name") or self.path.stem
        self.attribution = (attribution or meta.get("attribution") or f"local file {self.path.name}").strip()
        self.notes = f"local MBTiles {self.path}"
        first = conn.execute("SELECT tile_data FROM tiles LIMIT 1").fetchone()
        self.tile_size = _image_width(first[0]) if first else 256

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.is_file():
                raise LocalSourceError(f"MBTiles file {self.path} does not exist.")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    @property
    def cache_key(self) -> str:
        return _slug(f"mbtiles-{self.path.stem}")

    def read_tile(self, z: int, x: int, y: int) -> bytes | None:
        """Bytes of tile (z, x, y) (XYZ row; flipped to the TMS row the file stores), or None."""
        row = (1 << z) - 1 - y
        found = self._connect().execute(
            "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?", (z, x, row)
        ).fetchone()
        return bytes(found[0]) if found else None

    def __repr__(self) -> str:
        return f"MBTilesProvider({str(self.path)!r}, zoom {self.min_zoom}-{self.max_zoom})"


def _image_width(data: bytes) -> int:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.size[0])
    except Exception:
        return 256


RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


class LocalRasterProvider(Provider):
    """A local GeoTIFF/COG (any CRS) or a folder of them (the first file covering the point is used),
    read with rasterio and reprojected (bilinear) onto the chip geometry's exact grid."""

    cache_policy = "none"

    def __init__(self, path: str | Path, attribution: str | None = None, name: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise LocalSourceError(f"local imagery {self.path} does not exist; check the path.")
        if self.path.is_dir():
            files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES + (".mbtiles",))
            if not files:
                raise LocalSourceError(
                    f"folder {self.path} holds no GeoTIFF/COG/MBTiles files ({', '.join(RASTER_SUFFIXES)}, .mbtiles)."
                )
            self.files = files
        else:
            self.files = [self.path]
        self.name = name or self.path.name
        self.attribution = (attribution or f"local imagery {self.path.name}").strip()
        self.max_zoom = 24
        self.notes = f"local raster {self.path}"

    def __repr__(self) -> str:
        return f"LocalRasterProvider({str(self.path)!r}, {len(self.files)} file(s))"


def LocalProvider(path: str | Path, attribution: str | None = None, name: str | None = None) -> Provider:
    """A provider for a local file or folder: MBTiles files are read tile by tile with sqlite3 (exact,
    like a tile server), GeoTIFF/COG files and folders through rasterio with reprojection."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".mbtiles":
        return MBTilesProvider(p, attribution=attribution, name=name)
    return LocalRasterProvider(p, attribution=attribution, name=name)


# --- registry ---------------------------------------------------------------------------------------

EOX_URL = "https://tiles.maps.eox.at/wmts/1.0.0/{layer}/default/g/{{z}}/{{y}}/{{x}}.jpg"


def _eox(layer: str, year: str, licence: str, attribution: str) -> XYZProvider:
    tp = xyzservices.TileProvider(
        name=f"EOX.s2cloudless{year}", url=EOX_URL.format(layer=layer), attribution=attribution, max_zoom=14
    )
    return XYZProvider(
        tp.url,
        tp.attribution,
        max_zoom=tp.max_zoom,
        name=f"eox-s2cloudless-{year}",
        cache_policy="disk",
        notes=f"EOX Sentinel-2 cloudless {year}, {licence}; tiles may be cached on disk.",
    )


def _eox2020() -> XYZProvider:
    return _eox(
        "s2cloudless-2020_3857",
        "2020",
        "CC BY-NC-SA 4.0 (non-commercial use only)",
        "Sentinel-2 cloudless - https://s2maps.eu by EOX IT Services GmbH "
        "(Contains modified Copernicus Sentinel data 2020), CC BY-NC-SA 4.0",
    )


def _eox2016() -> XYZProvider:
    return _eox(
        "s2cloudless_3857",
        "2016",
        "CC BY 4.0 (commercial use allowed)",
        "Sentinel-2 cloudless - https://s2maps.eu by EOX IT Services GmbH "
        "(Contains modified Copernicus Sentinel data 2016 & 2017), CC BY 4.0",
    )


def _esri() -> XYZProvider:
    tp = xyz.Esri.WorldImagery
    return XYZProvider(
        tp.build_url(x="{x}", y="{y}", z="{z}"),
        "Powered by Esri | " + tp.attribution,
        max_zoom=19,
        name="esri-world-imagery",
        cache_policy="memory",
        disk_opt_in=True,
        repeats_are_placeholders=True,
        grey_small_is_placeholder=True,
        notes=(
            "Esri World Imagery under Esri's terms (which restrict storing data): tiles are kept in memory "
            "for this session only unless SAT2SOUND_ESRI_DISK_CACHE=1."
        ),
    )


def _azure() -> XYZProvider:
    # xyzservices' AzureMaps entry targets api-version 2.0 of the Render API (retiring); the current
    # Get Map Tile version takes the same zoom/x/y on the 256-px grid.
    template = (
        "https://atlas.microsoft.com/map/tile?api-version=2024-04-01&tilesetId=microsoft.imagery"
        "&zoom={z}&x={x}&y={y}&tileSize=256&subscription-key={key}"
    )
    return XYZProvider(
        template,
        "Imagery © Microsoft (Azure Maps) and its data providers",
        max_zoom=19,
        min_zoom=1,
        name="azure-maps-imagery",
        key_env=AZURE_KEY_ENV,
        cache_policy="memory",
        repeats_are_placeholders=True,
        notes=f"Azure Maps microsoft.imagery with your key from {AZURE_KEY_ENV}; memory cache only (terms).",
    )


REGISTRY: dict[str, Callable[[], Provider]] = {
    "eox-s2cloudless-2020": _eox2020,
    "eox-s2cloudless-2016": _eox2016,
    "esri-world-imagery": _esri,
    "azure-maps-imagery": _azure,
}
DEFAULT_PROVIDER: dict[str, str | None] = {
    "bingmap": "esri-world-imagery",
    "sentinel": "eox-s2cloudless-2020",
    "googleEarth": None,
}


def list_providers() -> list[str]:
    """Names accepted by :func:`get_provider` (and ``fetch_chip(provider=...)``)."""
    return sorted(REGISTRY)


def get_provider(provider: str | Path | Provider) -> Provider:
    """Resolve a registry name, a local file/folder path (``local:`` prefix optional) or a provider object.

    Unknown names raise :class:`ProviderError` listing the valid names.
    """
    if isinstance(provider, Provider):
        return provider
    if isinstance(provider, Path):
        return LocalProvider(provider)
    if not isinstance(provider, str):
        raise ProviderError(
            f"provider must be a name ({', '.join(list_providers())}), a path or a provider object, "
            f"not {type(provider).__name__}."
        )
    text = provider.strip()
    key = text.lower()
    if key in REGISTRY:
        return REGISTRY[key]()
    if key.startswith("local:"):
        return LocalProvider(text[6:])
    if key.startswith(("http://", "https://")):
        host = host_of(text)
        return XYZProvider(text, f"imagery from {host} (user-configured; check its terms)", max_zoom=20)
    if Path(text).expanduser().exists():
        return LocalProvider(text)
    raise ProviderError(
        f"unknown imagery provider {text!r}; valid names: {', '.join(list_providers())}, "
        "or a local GeoTIFF/COG/MBTiles path, or tiles.XYZProvider(url_template, attribution, max_zoom)."
    )
