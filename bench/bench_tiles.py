"""Chip assembly speed: from the loopback tile server (cold), the memory cache and the disk cache.

Run with ``python -m bench tiles`` (add ``--repeats=N``). Numbers depend on the machine and its load;
the loopback server runs in the same process (its PNG encoding competes for the GIL), so the cold
numbers are a lower bound of what the fetch path can do, not a network measurement.
"""

from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import tiles
from tests.tiles.tileserver import TileServer


def _time(fn: Callable[[], object], before: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str]) -> dict:
    repeats = 3
    for arg in argv:
        if arg.startswith("--repeats="):
            repeats = int(arg.split("=", 1)[1])
    old_home = os.environ.get("SAT2SOUND_HOME")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as home, TileServer() as server:
        os.environ["SAT2SOUND_HOME"] = home
        fetcher = tiles.TileFetcher(backoff=0.01)
        provider = tiles.XYZProvider(server.url_template, "loopback", max_zoom=20, name="bench-loopback")
        try:
            for geometry, lat, lon in (("bingmap", 45.0, 7.0), ("sentinel", 45.0, 7.0)):
                fetch = functools.partial(tiles.fetch_chip, lat, lon, geometry, provider, fetcher=fetcher)
                fetch()  # warm the server's own tile encoding cache
                n_tiles = fetcher.last_stats.tiles

                def cold() -> None:  # empty memory cache and a fresh (empty) home for the disk cache
                    tiles.clear_memory_cache()
                    os.environ["SAT2SOUND_HOME"] = tempfile.mkdtemp(dir=home)

                runs = {
                    "loopback (cold)": _time(fetch, cold, repeats),
                    "disk cache": _time(fetch, tiles.clear_memory_cache, repeats),
                    "memory cache": _time(fetch, lambda: None, repeats),
                }
                for label, times in runs.items():
                    median = statistics.median(times)
                    results[f"{geometry} {label}"] = {
                        "seconds": round(median, 4),
                        "tiles": n_tiles,
                        "tiles_per_s": round(n_tiles / median, 1),
                    }
        finally:
            fetcher.close()
            if old_home is None:
                os.environ.pop("SAT2SOUND_HOME", None)
            else:
                os.environ["SAT2SOUND_HOME"] = old_home
    print(f"{'case':32s} {'median s':>9s} {'tiles':>6s} {'tiles/s':>9s}   (repeats={repeats}, os.cpu_count={os.cpu_count()})")
    for name, row in results.items():
        print(f"{name:32s} {row['seconds']:9.3f} {row['tiles']:6d} {row['tiles_per_s']:9.1f}")
    return {"repeats": repeats, "results": results}


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
