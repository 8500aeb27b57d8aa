"""Tile caches: a bounded in-memory LRU for the session and an MBTiles (SQLite) file per provider.

The disk cache uses the standard MBTiles schema (``metadata``; ``tiles`` with TMS rows,
``tile_row = 2**z - 1 - y``) plus a ``sha256`` column, so any MBTiles reader can open it. Writes are
SQLite transactions (atomic: a crash leaves either the old or the new row). On every read the body's
sha256 is checked and the image header decoded; a corrupt entry is deleted and reported as a miss so the
tile is fetched again. A file that cannot serve as this cache (not a database, unreadable, a table that
lacks a column, a folder in its place) is moved aside to ``<name>.corrupt-<time>`` and recreated, with
one warning. A full disk is not "corrupt": it raises, and the fetcher goes on without the disk cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

from tiles.config import DEFAULT_TILE_MAX_PIXELS
from tiles.images import image_ok

log = logging.getLogger(__name__)

TileKey = tuple[str, int, int, int]  # (cache_key, z, x, y)
TILE_COLUMNS = ("zoom_level", "tile_column", "tile_row", "tile_data", "sha256", "fetched")
METADATA_COLUMNS = ("name", "value")


class CacheSchemaError(sqlite3.DatabaseError):
    """An existing cache file's tables do not have the columns this cache needs."""


def _check_schema(conn: sqlite3.Connection) -> None:
    for table, wanted in (("tiles", TILE_COLUMNS), ("metadata", METADATA_COLUMNS)):
        have = [row[1] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()]
        if list(have) != list(wanted):
            raise CacheSchemaError(f"table {table} has columns {have}, expected {list(wanted)}")


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and "full" in str(exc).lower()


class MemoryTileCache:
    """Process-wide LRU of tile bodies bounded by total bytes (default 256 MiB); thread-safe."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[TileKey, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: TileKey) -> bytes | None:
        with self._lock:
            data = self._data.get(key)
            if data is not None:
                self._data.move_to_end(key)
            return data

    def put(self, key: TileKey, data: bytes) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = data
            self._size += len(data)
            while self._size > self.max_bytes and self._data:
                _, dropped = self._data.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._size = 0

    def __len__(self) -> int:
        return len(self._data)


def body_ok(data: bytes, max_pixels: int = DEFAULT_TILE_MAX_PIXELS) -> bool:
    """True when ``data`` parses as an image of at most ``max_pixels`` (header + structure; no full decode)."""
    return image_ok(data, max_pixels)


class DiskTileCache:
    """One MBTiles file of cached tiles for one provider (``<home>/tiles/<cache_key>.mbtiles``)."""

    def __init__(self, path: Path, name: str = "", attribution: str = "") -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = self._open(name, attribution)

    def _open(self, name: str, attribution: str) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn: sqlite3.Connection | None = None
        for attempt in range(2):
            try:
                conn = None
                if self.path.is_dir():
                    raise sqlite3.DatabaseError("a folder is in the cache file's place")
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                with conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS metadata (name TEXT PRIMARY KEY, value TEXT)")
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS tiles (zoom_level INTEGER, tile_column INTEGER, "
                        "tile_row INTEGER, tile_data BLOB, sha256 TEXT, fetched REAL)"
                    )
                    conn.execute(
                        "CREATE UNIQUE INDEX IF NOT EXISTS tile_index ON tiles (zoom_level, tile_column, tile_row)"
                    )
                    meta = {"name": name or self.path.stem, "attribution": attribution, "type": "baselayer",
                            "version": "1", "description": "sat2sound tile cache", "format": "jpg"}
                    conn.executemany("INSERT OR IGNORE INTO metadata VALUES (?, ?)", list(meta.items()))
                _check_schema(conn)
                conn.execute("SELECT COUNT(*) FROM tiles").fetchone()
                return conn
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                if attempt or _disk_full(exc):
                    raise
                aside = self.path.with_suffix(f".corrupt-{int(time.time())}")
                log.warning(
                    "tile cache %s cannot be used (%s); moving it to %s and starting an empty cache",
                    self.path, exc, aside,
                )
                os.replace(self.path, aside)
                for extra in ("-wal", "-shm"):
                    side = Path(str(self.path) + extra)
                    if side.exists():
                        side.unlink()
        raise AssertionError("unreachable")

    def get(self, z: int, x: int, y: int) -> bytes | None:
        """The cached body of tile (z, x, y), or None if absent or corrupt (corrupt rows are deleted)."""
        row = (1 << z) - 1 - y
        with self._lock:
            found = self._conn.execute(
                "SELECT CAST(tile_data AS BLOB), sha256 FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, row),
            ).fetchone()
        if found is None:
            return None
        data = bytes(found[0]) if found[0] is not None else b""
        if hashlib.sha256(data).hexdigest() != found[1] or not body_ok(data):
            log.warning("corrupt cached tile %s/%s/%s in %s; fetching it again", z, x, y, self.path.name)
            with self._lock, self._conn:
                self._conn.execute(
                    "DELETE FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?", (z, x, row)
                )
            return None
        return data

    def put_many(self, items: list[tuple[int, int, int, bytes]]) -> None:
        """Store tiles (z, x, y, body) in one transaction."""
        if not items:
            return
        now = time.time()
        rows = [(z, x, (1 << z) - 1 - y, sqlite3.Binary(d), hashlib.sha256(d).hexdigest(), now) for z, x, y, d in items]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO tiles VALUES (?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
