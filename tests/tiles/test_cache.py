"""The tile caches on their own: LRU bound, MBTiles layout, integrity checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.tiles.tileserver import coordinate_tile, encode
from tiles import DiskTileCache, MemoryTileCache


def test_memory_cache_is_a_byte_bounded_lru() -> None:
    cache = MemoryTileCache(max_bytes=30)
    cache.put(("p", 1, 0, 0), b"a" * 10)
    cache.put(("p", 1, 0, 1), b"b" * 10)
    cache.put(("p", 1, 1, 0), b"c" * 10)
    assert cache.get(("p", 1, 0, 0)) == b"a" * 10  # now most recently used
    cache.put(("p", 1, 1, 1), b"d" * 10)  # evicts the least recently used: (0, 1)
    assert cache.get(("p", 1, 0, 1)) is None
    assert cache.get(("p", 1, 0, 0)) is not None and len(cache) == 3
    cache.clear()
    assert len(cache) == 0


def test_disk_cache_layout_and_integrity(tmp_path: Path) -> None:
    path = tmp_path / "tiles" / "prov.mbtiles"
    cache = DiskTileCache(path, name="prov", attribution="© prov")
    body = encode(coordinate_tile(5, 3, 7))
    cache.put_many([(5, 3, 7, body)])
    assert cache.get(5, 3, 7) == body and cache.get(5, 3, 8) is None
    cache.close()
    with sqlite3.connect(path) as conn:  # standard MBTiles tables, TMS row
        assert conn.execute("SELECT tile_row FROM tiles").fetchone()[0] == 2**5 - 1 - 7
        meta = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
        assert meta["name"] == "prov" and meta["attribution"] == "© prov"
        conn.execute("UPDATE tiles SET tile_data = ?", (b"\x89PNG truncated",))
    cache = DiskTileCache(path)
    assert cache.get(5, 3, 7) is None  # hash mismatch: dropped
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0] == 0
    # a body whose stored hash matches but which is not an image is rejected too
    cache.put_many([(5, 3, 7, b"not an image")])
    assert cache.get(5, 3, 7) is None
    cache.close()
