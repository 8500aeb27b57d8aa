"""Polite, concurrent tile fetching with memory and disk caches.

:class:`TileFetcher` resolves tiles in three layers: the session memory cache, the provider's MBTiles
disk cache (only where its terms and the settings allow), then the network through one
``requests.Session`` shared by a bounded thread pool. Requests carry the configured User-Agent and
timeouts; 429 and 5xx answers and network errors are retried with exponential backoff (honouring
``Retry-After``); 404/204 mean "no tile here"; bodies that are not images (HTML error pages served with
status 200 are a classic) are rejected. URLs are logged only in redacted form.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from tiles.cache import DiskTileCache, MemoryTileCache, body_ok
from tiles.config import TilesConfig, get_config
from tiles.errors import ProviderError, TileFetchError
from tiles.providers import MBTilesProvider, TileSource, XYZProvider

log = logging.getLogger(__name__)

Tile = tuple[int, int, int]  # (z, x, y), x already wrapped into [0, 2**z)
RETRY_STATUS = {429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
MEMORY_CACHE = MemoryTileCache()


def clear_memory_cache() -> None:
    """Forget every tile held in the session memory cache."""
    MEMORY_CACHE.clear()


@dataclass
class FetchStats:
    """Where the tiles of the last :meth:`TileFetcher.get_tiles` call came from."""

    tiles: int = 0
    memory: int = 0
    disk: int = 0
    network: int = 0
    seconds: float = 0.0


class TileFetcher:
    """Fetches tiles of a :class:`TileSource` through memory cache → disk cache → network.

    ``retries`` extra attempts are made on 429/5xx/timeouts, sleeping ``backoff * 2**attempt`` seconds
    (at most ``max_backoff``); ``timeout`` is (connect, read) seconds; ``max_workers`` bounds concurrent
    requests. ``config`` defaults to :func:`tiles.config.get_config` read at each call.
    """

    def __init__(
        self,
        config: TilesConfig | None = None,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        max_workers: int = 8,
        memory_cache: MemoryTileCache | None = None,
    ) -> None:
        self._config = config
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.max_workers = max_workers
        self.memory = memory_cache if memory_cache is not None else MEMORY_CACHE
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max_workers * 2, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tiles")
        self._disk: dict[str, DiskTileCache] = {}
        self._disk_lock = threading.Lock()
        self.last_stats = FetchStats()

    @property
    def config(self) -> TilesConfig:
        return self._config if self._config is not None else get_config()

    def disk_cache(self, source: TileSource, config: TilesConfig) -> DiskTileCache | None:
        """The MBTiles cache of ``source`` when its effective policy is ``disk``; else None."""
        if not source.remote or source.effective_cache_policy(config) != "disk":
            return None
        path = config.tile_cache_dir / f"{source.cache_key}.mbtiles"
        with self._disk_lock:
            cache = self._disk.get(str(path))
            if cache is None:
                try:
                    cache = DiskTileCache(path, name=source.name, attribution=source.attribution)
                except (OSError, sqlite3.Error) as exc:
                    # An unwritable home must not stop imagery from loading: fall back to memory.
                    log.warning("tile disk cache %s unavailable (%s); keeping tiles in memory only", path, exc)
                    return None
                self._disk[str(path)] = cache
            return cache

    def get_tiles(self, source: TileSource, tiles: list[Tile]) -> dict[Tile, bytes | None]:
        """Bodies of ``tiles`` (None where the provider has no tile: HTTP 404/204 or absent in MBTiles)."""
        start = time.perf_counter()
        stats = FetchStats(tiles=len(tiles))
        out: dict[Tile, bytes | None] = {}
        if isinstance(source, MBTilesProvider):
            for t in tiles:
                out[t] = source.read_tile(*t)
            stats.seconds = time.perf_counter() - start
            self.last_stats = stats
            return out
        if not isinstance(source, XYZProvider):
            raise ProviderError(f"{source!r} is not a tile source.")
        source.check_ready()
        config = self.config
        self.session.headers["User-Agent"] = config.user_agent
        policy = source.effective_cache_policy(config)
        disk = self.disk_cache(source, config)
        todo: list[Tile] = []
        for t in tiles:
            data = self.memory.get((source.cache_key, *t)) if policy != "none" else None
            if data is not None:
                out[t] = data
                stats.memory += 1
                continue
            data = disk.get(*t) if disk is not None else None
            if data is not None:
                out[t] = data
                stats.disk += 1
                self.memory.put((source.cache_key, *t), data)
                continue
            todo.append(t)
        if todo and config.offline:
            raise TileFetchError(
                f"offline (SAT2SOUND_OFFLINE is set): {len(todo)} of {len(tiles)} tiles of {source.name} are not "
                "in the tile cache. Unset SAT2SOUND_OFFLINE to download them, or use a local file."
            )
        if todo:
            results = self._download_all(source, todo)
            stats.network = len(todo)
            fresh = []
            for t, data in zip(todo, results, strict=True):
                out[t] = data
                if data is not None and policy != "none":
                    self.memory.put((source.cache_key, *t), data)
                    fresh.append((*t, data))
            if disk is not None:
                disk.put_many(fresh)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        log.debug("%s: %s", source.name, stats)
        return out

    def _download_all(self, source: XYZProvider, todo: list[Tile]) -> list[bytes | None]:
        # On the first failure the other downloads are told to stop (before their next attempt) and
        # awaited, so no request of a failed chip is still running when the error reaches the caller.
        abort = threading.Event()
        futures = [self._pool.submit(self._download, source, t, abort) for t in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            return [f.result() for f in futures]
        except BaseException:
            abort.set()
            for f in futures:
                f.cancel()
            wait(futures)
            raise

    def _sleep_for(self, attempt: int, response: requests.Response | None) -> float:
        delay = float(self.backoff * (2**attempt))
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.strip().isdigit():
                delay = max(delay, float(retry_after))
        return min(delay, self.max_backoff)

    def _download(self, source: XYZProvider, tile: Tile, abort: threading.Event) -> bytes | None:
        url = source.url(*tile)
        shown = source.redact(url)
        problem = ""
        for attempt in range(self.retries + 1):
            if abort.is_set():
                raise TileFetchError(f"{source.name}: tile {shown} abandoned (another tile failed).")
            response: requests.Response | None = None
            try:
                response = self.session.get(url, timeout=self.timeout)
            except requests.Timeout:
                problem = f"timed out (timeout {self.timeout} s)"
            except requests.RequestException as exc:
                problem = f"network error: {source.redact(str(exc))}"
            else:
                status = response.status_code
                if status == 200:
                    return self._check_body(source, response, shown)
                if status in (204, 404):
                    return None
                if status in (401, 403):
                    hint = (
                        f"check the key in {source.key_env}"
                        if source.key_env
                        else "the provider refuses this client; check its terms and the URL template"
                    )
                    raise ProviderError(f"{source.name} refused tile {shown} (HTTP {status}); {hint}.")
                if status not in RETRY_STATUS and status < 500:
                    raise TileFetchError(f"{source.name} answered HTTP {status} for tile {shown}.")
                problem = f"HTTP {status}"
            if attempt < self.retries:
                delay = self._sleep_for(attempt, response)
                log.info("tile %s: %s; retry %d/%d in %.2f s", shown, problem, attempt + 1, self.retries, delay)
                abort.wait(delay)
        raise TileFetchError(
            f"{source.name}: tile {shown} failed after {self.retries + 1} attempts ({problem}). The server may "
            "be overloaded or unreachable; try again later or choose another provider."
        )

    @staticmethod
    def _check_body(source: XYZProvider, response: requests.Response, shown: str) -> bytes:
        data = response.content
        ctype = response.headers.get("Content-Type", "").lower()
        textual = ctype.startswith(("text/", "application/json", "application/xml")) or "html" in ctype
        if textual or not body_ok(data):
            head = source.redact(data[:80].decode("utf-8", "replace")).replace("\n", " ")
            raise TileFetchError(
                f"{source.name} returned something that is not an image for tile {shown} "
                f"(Content-Type {ctype or 'missing'}, starts with {head!r}). This is usually an error page: "
                "check the URL template, the key and the provider's status."
            )
        return data

    def close(self) -> None:
        """Stop the worker threads and close the HTTP session and cache files."""
        self._pool.shutdown(wait=True)
        self.session.close()
        with self._disk_lock:
            for cache in self._disk.values():
                cache.close()
            self._disk.clear()


_DEFAULT: TileFetcher | None = None
_DEFAULT_LOCK = threading.Lock()


def default_fetcher() -> TileFetcher:
    """The process-wide fetcher used when ``fetch_chip`` gets none (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = TileFetcher()
        return _DEFAULT
