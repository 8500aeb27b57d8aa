"""Hostile and broken tile servers and tile caches (issue 17, items 3, 4, 8, 9, 15, 17).

Every network case runs against a loopback server these tests start (``tests.tiles.hostileserver``);
nothing leaves the machine. Memory bounds are measured in a child Python with ``resource.getrusage``;
deadlines with the wall clock.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tiles
from tests.tiles.hostileserver import HostileServer, huge_png
from tests.tiles.tileserver import TileServer
from tiles import TileFetcher, TileFetchError, TilesConfigError, XYZProvider
from tiles.config import get_config
from tiles.fetch import fetch_chip
from tiles.mosaic import assemble, decode_tile

ROOT = Path(__file__).resolve().parents[2]
TILE = (18, 1000, 1000)
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def tiles_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("SAT2SOUND_HOME", str(home))
    for name in ("SAT2SOUND_TILE_CACHE", "SAT2SOUND_ESRI_DISK_CACHE", "SAT2SOUND_OFFLINE", "SAT2SOUND_TILE_DEADLINE",
                 "SAT2SOUND_TILE_MAX_BYTES", "SAT2SOUND_TILE_MAX_PIXELS", "HOSTILE_TEST_KEY"):
        monkeypatch.delenv(name, raising=False)
    tiles.clear_memory_cache()
    yield home
    tiles.clear_memory_cache()


@pytest.fixture()
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


def _provider(template: str, name: str = "hostile") -> XYZProvider:
    return XYZProvider(template, "hostile test tiles", max_zoom=20, name=name)


def _fetcher(retries: int = 4) -> TileFetcher:
    # The product's default timeouts (5 s connect, 30 s read): the deadline must bound them.
    return TileFetcher(retries=retries, backoff=0.2, max_backoff=1.0, max_workers=4)


# --- item 3: deadline per chip ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["trickle", "silent"])
def test_a_slow_server_fails_the_chip_within_its_deadline(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("SAT2SOUND_TILE_DEADLINE", "2")
    fetcher = _fetcher()
    start = time.monotonic()
    try:
        with pytest.raises(TileFetchError, match=r"within its 2 s deadline.*SAT2SOUND_TILE_DEADLINE") as info:
            fetcher.get_tiles(_provider(hostile.template(kind)), [TILE, (18, 1001, 1000)])
    finally:
        fetcher.close()
    elapsed = time.monotonic() - start
    assert elapsed < 3.5, f"{kind}: the chip held its caller {elapsed:.1f} s past a 2 s deadline"
    assert "\n" not in str(info.value)


def test_retries_and_backoff_stop_at_the_deadline(hostile: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dead-slow provider with many retries: before, 4 retries × 30 s read timeouts ≈ 2 min per tile.
    monkeypatch.setenv("SAT2SOUND_TILE_DEADLINE", "1.5")
    hostile.silent_seconds = 0.6
    fetcher = TileFetcher(retries=20, backoff=0.5, max_backoff=8.0, timeout=(5.0, 0.5), max_workers=2)
    start = time.monotonic()
    try:
        with pytest.raises(TileFetchError, match="deadline"):
            fetcher.get_tiles(_provider(hostile.template("silent")), [TILE])
    finally:
        fetcher.close()
    assert time.monotonic() - start < 2.5


# --- item 3: bytes and pixels per tile, measured in a child process -------------------------------

_CHILD = r"""
import json, sys
import tiles, tiles.fetch


def hwm_kib():
    # VmHWM is this process's own peak RSS; ru_maxrss would include the parent's RSS at fork time
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


from tiles import TileFetcher, TileFetchError, XYZProvider
from tiles.mosaic import assemble
provider = XYZProvider(sys.argv[1], "hostile", max_zoom=20, name="hostile")
fetcher = TileFetcher(retries=0, timeout=(2.0, 10.0), max_workers=1)
base = hwm_kib()
error = ""
try:
    assemble(provider, fetcher, 18, 1000 * 256, 1000 * 256, 256, 256)
except TileFetchError as exc:
    error = str(exc)
peak = hwm_kib()
print(json.dumps({"growth_mib": (peak - base) / 1024, "error": error}))
"""


def _fetch_in_child(template: str, home: Path) -> dict[str, object]:
    env = {**os.environ, "SAT2SOUND_HOME": str(home), "SAT2SOUND_TILE_CACHE": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, template], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("endless", r"larger than 4194304 bytes \(SAT2SOUND_TILE_MAX_BYTES\)"),
        ("gzip", r"larger than 4194304 bytes \(SAT2SOUND_TILE_MAX_BYTES\)"),
        ("huge", r"declares 12000×12000 px.*SAT2SOUND_TILE_MAX_PIXELS"),
    ],
)
def test_hostile_bodies_are_refused_in_bounded_memory(
    hostile: HostileServer, tiles_home: Path, kind: str, message: str
) -> None:
    # Before: an endless body grew without bound (capped here at 256 MiB by the server), the gzip bomb
    # decoded to 512 MiB, and the 12000² PNG decoded to 412 MiB before its size was looked at.
    result = _fetch_in_child(hostile.template(kind), tiles_home)
    assert re.search(message, str(result["error"])), result
    growth = float(str(result["growth_mib"]))
    assert growth < 64, f"{kind}: peak memory grew by {growth:.0f} MiB while refusing one tile"


def test_a_declared_oversized_body_is_refused_before_reading(hostile: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAT2SOUND_TILE_MAX_BYTES", "100000")
    fetcher = _fetcher(retries=0)
    try:
        with pytest.raises(TileFetchError, match="larger than 100000 bytes"):
            fetcher.get_tiles(_provider(hostile.template("huge")), [TILE])  # Content-Length ~ 420 KB
    finally:
        fetcher.close()


def test_huge_local_tile_is_refused_from_its_header_without_decoding() -> None:
    source = _provider("http://127.0.0.1:9/{z}/{x}/{y}.png")
    body = huge_png()
    start = time.monotonic()
    with pytest.raises(TileFetchError, match=r"declares 12000×12000 px"):
        decode_tile(body, source, TILE)
    assert time.monotonic() - start < 0.5  # a full decode of 432 MB takes seconds


def test_limits_are_settings_validated_with_the_fix() -> None:
    config = get_config({})
    assert (config.tile_deadline, config.tile_max_bytes, config.tile_max_pixels) == (60.0, 4 * MiB, 1024 * 1024)
    config = get_config({"SAT2SOUND_TILE_DEADLINE": "7.5", "SAT2SOUND_TILE_MAX_BYTES": "2048",
                         "SAT2SOUND_TILE_MAX_PIXELS": "262144"})
    assert (config.tile_deadline, config.tile_max_bytes, config.tile_max_pixels) == (7.5, 2048, 262144)
    for name, bad in [("TILE_DEADLINE", "soon"), ("TILE_DEADLINE", "0"), ("TILE_DEADLINE", "inf"),
                      ("TILE_MAX_BYTES", "-1"), ("TILE_MAX_BYTES", "2048.5"), ("TILE_MAX_PIXELS", "10")]:
        with pytest.raises(TilesConfigError, match=f"SAT2SOUND_{name}=.*default SAT2SOUND_{name}="):
            get_config({f"SAT2SOUND_{name}": bad})


# --- item 4: redirects -----------------------------------------------------------------------------


def test_redirect_to_link_local_metadata_is_refused(hostile: HostileServer) -> None:
    fetcher = _fetcher(retries=0)
    start = time.monotonic()
    try:
        with pytest.raises(TileFetchError, match=r"redirected tile .* to another host \(169\.254\.169\.254\)"):
            fetcher.get_tiles(_provider(hostile.template("redirect-meta")), [TILE])
    finally:
        fetcher.close()
    assert time.monotonic() - start < 2  # refused, not attempted (a connect there would hang 5 s)


def test_redirect_to_another_host_is_not_followed(hostile: HostileServer) -> None:
    with TileServer() as other:  # another port stands in for another (intranet) host
        hostile.redirect_target = f"http://127.0.0.1:{other.port}"
        fetcher = _fetcher(retries=0)
        try:
            with pytest.raises(TileFetchError, match="another host"):
                fetcher.get_tiles(_provider(hostile.template("redirect-to")), [TILE])
        finally:
            fetcher.close()
        assert other.request_count == 0


def test_redirect_within_the_same_host_is_followed(hostile: HostileServer) -> None:
    fetcher = _fetcher(retries=0)
    try:
        bodies = fetcher.get_tiles(_provider(hostile.template("redirect-same")), [TILE])
    finally:
        fetcher.close()
    assert bodies[TILE] is not None and bodies[TILE].startswith(b"\x89PNG")
    assert [p.split("/")[1] for p in hostile.paths] == ["redirect-same", "ok"]


@pytest.mark.parametrize("kind", ["ok", "missing"])
def test_streaming_keeps_connections_alive(hostile: HostileServer, kind: str) -> None:
    # Bodies are streamed under the caps; a fully read body (tile or 404) gives its connection back.
    fetcher = TileFetcher(retries=0, max_workers=1)
    try:
        bodies = fetcher.get_tiles(_provider(hostile.template(kind)), [(18, 1000 + i, 1000) for i in range(6)])
    finally:
        fetcher.close()
    assert all((b is not None) == (kind == "ok") for b in bodies.values())
    assert len(hostile.client_ports) == 6 and len(set(hostile.client_ports)) == 1, hostile.client_ports


# --- item 17: a reset connection says so ---------------------------------------------------------


def test_a_reset_connection_is_reported_as_reset_not_timeout(hostile: HostileServer) -> None:
    fetcher = TileFetcher(retries=1, backoff=0.01, max_backoff=0.05, max_workers=1)
    try:
        with pytest.raises(TileFetchError) as info:
            fetcher.get_tiles(_provider(hostile.template("reset")), [TILE])
    finally:
        fetcher.close()
    assert "reset the connection" in str(info.value)
    assert "timed out" not in str(info.value)


# --- item 8 (tiles part): credentials and keys ------------------------------------------------------


def test_credentials_in_a_provider_url_never_reach_names_attribution_reprs_or_chips(hostile: HostileServer) -> None:
    template = hostile.template("ok").replace("http://", "http://alice:s3cr3t-pw@")
    provider = tiles.get_provider(template)
    assert isinstance(provider, XYZProvider)
    texts = [provider.name, provider.attribution, repr(provider), provider.url_template, provider.cache_key,
             provider.redact(template)]
    assert not any("s3cr3t" in t or "alice" in t for t in texts), texts
    named = XYZProvider(template, "creds test", max_zoom=20)
    assert named.name == f"127.0.0.1:{hostile.port}"
    fetcher = _fetcher(retries=0)
    try:
        chip = fetch_chip(45.0, 7.0, "bingmap", named, fetcher=fetcher)
    finally:
        fetcher.close()
    assert "s3cr3t" not in chip.provider + chip.attribution + " ".join(chip.notes)
    # the credentials are still used: sent as HTTP basic auth, not dropped
    assert all(h.get("Authorization", "").startswith("Basic ") for h in hostile.headers)


def test_api_keys_never_reach_a_log_line_at_debug(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "hostile-key-0123456789"
    monkeypatch.setenv("HOSTILE_TEST_KEY", key)
    template = hostile.template("ok") + "?api-version=1&subscription-key={key}"
    provider = XYZProvider(template, "keyed", max_zoom=20, name="keyed", key_env="HOSTILE_TEST_KEY")
    fetcher = _fetcher(retries=1)
    caplog.set_level(logging.DEBUG)
    try:
        fetcher.get_tiles(provider, [TILE])
        with pytest.raises(TileFetchError):  # an error path too: the message and its logs
            fetcher.get_tiles(XYZProvider(hostile.template("reset") + "?subscription-key={key}", "keyed", 20,
                                          name="keyed-reset", key_env="HOSTILE_TEST_KEY"), [TILE])
    finally:
        fetcher.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any(r.name.startswith("urllib3") and "subscription-key=***" in r.getMessage() for r in caplog.records), (
        "urllib3 logged no request line: the test would not see a leak"
    )
    assert not any(key in m for m in messages), [m for m in messages if key in m]
    assert hostile.paths and all(key in p for p in hostile.paths)  # the key was still sent


# --- items 15 and 9: the disk cache is optional -----------------------------------------------------


def _cache_path(provider: XYZProvider) -> Path:
    return get_config().tile_cache_dir / f"{provider.cache_key}.mbtiles"


def _bad_cache(path: Path, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "missing-column":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE metadata (name TEXT PRIMARY KEY, value TEXT)")
            conn.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        conn.close()
    elif how == "not-a-database":
        path.write_bytes(b"this is not sqlite at all" * 100)
    elif how == "folder":
        path.mkdir()
        (path / "x").write_text("x")


@pytest.mark.parametrize("how", ["missing-column", "not-a-database", "folder"])
def test_a_bad_tile_cache_is_set_aside_and_rebuilt_with_one_warning(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    provider = _provider(hostile.template("ok"))
    path = _cache_path(provider)
    _bad_cache(path, how)
    caplog.set_level(logging.WARNING, logger="tiles")
    fetcher = _fetcher(retries=0)
    try:
        assert fetcher.get_tiles(provider, [TILE])[TILE] is not None
        tiles.clear_memory_cache()
        assert fetcher.get_tiles(provider, [TILE])[TILE] is not None
        assert fetcher.last_stats.disk == 1  # the rebuilt cache serves the tile
    finally:
        fetcher.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "moving it to" in warnings[0].getMessage(), [w.getMessage() for w in warnings]
    assert list(path.parent.glob(path.stem + ".corrupt-*")), "the bad cache was not kept aside"
    assert hostile.request_count == 1


def test_a_full_disk_turns_the_cache_off_with_one_warning(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = _provider(hostile.template("noise"))
    fetcher = _fetcher(retries=0)
    try:
        cache = fetcher.disk_cache(provider, get_config())
        assert cache is not None
        # SQLITE_FULL, exactly what a full disk gives: no page may be added to the file.
        pages = cache._conn.execute("PRAGMA page_count").fetchone()[0]
        cache._conn.execute(f"PRAGMA max_page_count = {pages}")
        caplog.set_level(logging.WARNING, logger="tiles")
        first = fetcher.get_tiles(provider, [TILE, (18, 1001, 1000)])
        second = fetcher.get_tiles(provider, [(18, 1002, 1000), (18, 1003, 1000)])
    finally:
        fetcher.close()
    assert all(v is not None for v in [*first.values(), *second.values()])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "disk is full" in warnings[0], warnings


def test_a_cache_failing_on_read_is_skipped(hostile: HostileServer, caplog: pytest.LogCaptureFixture) -> None:
    provider = _provider(hostile.template("ok"))
    fetcher = _fetcher(retries=0)
    try:
        cache = fetcher.disk_cache(provider, get_config())
        assert cache is not None
        cache._conn.execute("ALTER TABLE tiles RENAME TO gone")  # damaged while open
        caplog.set_level(logging.WARNING, logger="tiles")
        assert fetcher.get_tiles(provider, [TILE])[TILE] is not None
        assert fetcher.get_tiles(provider, [(18, 1001, 1000)])[(18, 1001, 1000)] is not None
    finally:
        fetcher.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "turned off" in warnings[0], warnings


def test_deadline_default_leaves_a_normal_chip_alone(hostile: HostileServer) -> None:
    fetcher = _fetcher(retries=0)
    try:
        image, _ = assemble(_provider(hostile.template("ok")), fetcher, 18, 1000 * 256, 1000 * 256, 512, 512)
    finally:
        fetcher.close()
    assert image.shape == (512, 512, 3)


def test_same_host_rule() -> None:
    from tiles.fetcher import same_host

    assert same_host("http://tiles.example:80/1/2/3.png", "http://TILES.example/a.png")
    assert same_host("http://tiles.example/1.png", "https://tiles.example/1.png")  # upgrade
    assert not same_host("https://tiles.example/1.png", "http://tiles.example/1.png")  # downgrade
    assert not same_host("http://127.0.0.1:8000/1.png", "http://127.0.0.1:8001/1.png")
    assert not same_host("http://tiles.example/1.png", "http://tiles.example.evil/1.png")
    assert not same_host("http://tiles.example/1.png", "file:///etc/passwd")
    assert not same_host("http://tiles.example/1.png", "http://169.254.169.254/latest/meta-data/")


def test_url_redaction() -> None:
    from tiles.redact import redact_url_text

    text = redact_url_text('GET https://bob:hunter22@h.example/t?token=abc123&subscription-key=zzz999&x=1 "ok"')
    assert "hunter22" not in text and "bob" not in text and "abc123" not in text and "zzz999" not in text
    assert "https://***@h.example/t?token=***&subscription-key=***&x=1" in text
