"""Polite, concurrent tile fetching with memory and disk caches.

:class:`TileFetcher` resolves tiles in three layers: the session memory cache, the provider's MBTiles
disk cache (only where its terms and the settings allow), then the network through one
``requests.Session`` shared by a bounded thread pool. Requests carry the configured User-Agent and
timeouts; 429 and 5xx answers and network errors are retried with exponential backoff (honouring
``Retry-After``); 404/204 mean "no tile here"; bodies that are not images (HTML error pages served with
status 200 are a classic) are rejected. URLs are logged only in redacted form (urllib3's own DEBUG lines
included, through :func:`tiles.redact.install_log_redaction`).

Hostile or broken servers are bounded (settings in :mod:`tiles.config`): every chip has a wall-clock
deadline covering its requests, retries and backoff; each body is streamed in chunks and refused past
``tile_max_bytes`` after content decoding (endless bodies, gzip bombs); an image's declared pixel count
is checked before decoding. Redirects are followed only within the provider's host, so a tile server
cannot steer requests to metadata addresses or intranet hosts. The disk cache is optional: any SQLite
error while reading or writing it (a damaged file, a full disk) turns it off for the provider with one
warning and the tiles are kept in memory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions
from urllib3.response import BaseHTTPResponse

from tiles.cache import DiskTileCache, MemoryTileCache
from tiles.config import TilesConfig, get_config
from tiles.errors import ProviderError, TileFetchError
from tiles.images import TileImageError, open_tile_image
from tiles.providers import MBTilesProvider, TileSource, XYZProvider, host_of
from tiles.redact import install_log_redaction

log = logging.getLogger(__name__)

Tile = tuple[int, int, int]  # (z, x, y), x already wrapped into [0, 2**z)
RETRY_STATUS = {429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
MEMORY_CACHE = MemoryTileCache()
_CHUNK = 64 * 1024
_MAX_REDIRECTS = 3


class _Abandoned(TileFetchError):
    """A tile stopped because another tile of the chip failed (never the error the caller sees first)."""


class _DeadlinePassed(Exception):
    """The chip's deadline passed while a body was being read."""


@dataclass(frozen=True)
class _Limits:
    """The bounds of one chip's downloads: a monotonic deadline, bytes and pixels per tile."""

    deadline: float
    end: float
    max_bytes: int
    max_pixels: int

    def remaining(self) -> float:
        return self.end - time.monotonic()


def same_host(url: str, target: str) -> bool:
    """True when ``target`` is on the host and port of ``url`` (an http → https upgrade is allowed)."""
    a, b = urlsplit(url), urlsplit(target)
    if b.scheme not in ("http", "https") or (a.scheme == "https" and b.scheme == "http"):
        return False
    default = {"http": 80, "https": 443}
    try:
        port_a, port_b = a.port or default[a.scheme], b.port or default[b.scheme]
    except ValueError:
        return False
    if a.scheme != b.scheme:  # upgrade: only from the default http port to the default https port
        return (a.hostname or "").lower() == (b.hostname or "").lower() and (port_a, port_b) == (80, 443)
    return (a.hostname or "").lower() == (b.hostname or "").lower() and port_a == port_b


def _set_read_timeout(raw: BaseHTTPResponse, seconds: float) -> None:
    # Bound each socket read by what is left of the deadline, so a silent server cannot hold a chip
    # for a full read timeout past it.
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if isinstance(sock, socket.socket):
        current = sock.gettimeout()
        sock.settimeout(max(0.01, min(seconds, current) if current is not None else seconds))


def _finish(response: requests.Response, limits: _Limits) -> None:
    """Give the connection back to the pool when its body is fully read (keep-alive), else drop it.

    A short error body (404s are common) is drained first, within the deadline; a long or endless one
    closes the connection instead of being read.
    """
    raw = response.raw
    try:
        drained = 0
        while drained <= _CHUNK and limits.remaining() > 0:
            _set_read_timeout(raw, limits.remaining())
            chunk = raw.read1(_CHUNK, decode_content=True)
            if not chunk:
                raw.release_conn()
                return
            drained += len(chunk)
    except Exception:
        pass
    response.close()


def describe_network_error(
    exc: BaseException, timeout: float | tuple[float, float], redact: Callable[[str], str]
) -> str:
    """What happened, in words: timed out, connection reset/refused, host unknown, or the raw reason."""
    if isinstance(exc, requests.ConnectTimeout):
        return f"timed out connecting (timeout {timeout} s)"
    if isinstance(exc, requests.Timeout):
        return f"timed out waiting for data (timeout {timeout} s)"
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue and len(seen) < 32:  # the exception, its causes, urllib3 reasons and wrapped arguments
        cause = queue.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, ConnectionResetError) or getattr(cause, "errno", None) == errno.ECONNRESET:
            return "network error: the server reset the connection"
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "network error: the server refused the connection (nothing listens there)"
        if isinstance(cause, socket.gaierror):
            return "network error: the host name cannot be resolved (check the URL and the network)"
        linked = [cause.__cause__, cause.__context__, getattr(cause, "reason", None), *getattr(cause, "args", ())]
        queue.extend(c for c in linked if isinstance(c, BaseException))
    text = redact(str(exc))
    if "reset" in text.lower():
        return "network error: the server reset the connection"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"network error: the server broke off the body ({text})"
    return f"network error: {text}"


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
        self._disk_off: set[str] = set()
        self._disk_lock = threading.Lock()
        install_log_redaction()
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
            if str(path) in self._disk_off:
                return None
            cache = self._disk.get(str(path))
            if cache is None:
                try:
                    cache = DiskTileCache(path, name=source.name, attribution=source.attribution)
                except (OSError, sqlite3.Error) as exc:
                    # An unwritable home must not stop imagery from loading: fall back to memory.
                    log.warning("tile disk cache %s unavailable (%s); keeping tiles in memory only", path, exc)
                    self._disk_off.add(str(path))
                    return None
                self._disk[str(path)] = cache
            return cache

    def _disk_failed(self, cache: DiskTileCache, exc: Exception) -> None:
        """Turn a failing disk cache off for this fetcher with one warning (the cache is optional)."""
        with self._disk_lock:
            key = str(cache.path)
            if key in self._disk_off:
                return
            self._disk_off.add(key)
            self._disk.pop(key, None)
        full = "full" in str(exc).lower() or getattr(exc, "errno", None) == errno.ENOSPC
        reason = "the disk is full" if full else f"it failed ({exc})"
        log.warning(
            "tile disk cache %s turned off: %s; tiles are kept in memory only for this session%s",
            cache.path, reason, " (free some space to cache them again)" if full else "",
        )
        with contextlib.suppress(Exception):
            cache.close()

    def _disk_get(self, disk: DiskTileCache | None, tile: Tile) -> bytes | None:
        if disk is None:
            return None
        try:
            return disk.get(*tile)
        except (sqlite3.Error, OSError) as exc:
            self._disk_failed(disk, exc)
            return None

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
            data = self._disk_get(disk, t)
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
            limits = _Limits(
                config.tile_deadline, time.monotonic() + config.tile_deadline,
                config.tile_max_bytes, config.tile_max_pixels,
            )
            results = self._download_all(source, todo, limits)
            stats.network = len(todo)
            fresh = []
            for t, data in zip(todo, results, strict=True):
                out[t] = data
                if data is not None and policy != "none":
                    self.memory.put((source.cache_key, *t), data)
                    fresh.append((*t, data))
            if disk is not None and str(disk.path) not in self._disk_off:
                try:
                    disk.put_many(fresh)
                except (sqlite3.Error, OSError) as exc:
                    self._disk_failed(disk, exc)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        log.debug("%s: %s", source.name, stats)
        return out

    def _download_all(self, source: XYZProvider, todo: list[Tile], limits: _Limits) -> list[bytes | None]:
        # On the first failure the other downloads are told to stop (before their next attempt or chunk)
        # and awaited, so no request of a failed chip is still running when the error reaches the caller.
        abort = threading.Event()
        futures = [self._pool.submit(self._download, source, t, abort, limits) for t in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            return [f.result() for f in futures]
        except BaseException as exc:
            abort.set()
            for f in futures:
                f.cancel()
            wait(futures)
            if isinstance(exc, _Abandoned):  # report the failure that stopped the chip, not a casualty
                for f in futures:
                    cause = None if f.cancelled() else f.exception()
                    if cause is not None and not isinstance(cause, _Abandoned):
                        raise cause from None
            raise

    def _sleep_for(self, attempt: int, response: requests.Response | None) -> float:
        delay = float(self.backoff * (2**attempt))
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.strip().isdigit():
                delay = max(delay, float(retry_after))
        return min(delay, self.max_backoff)

    def _timeouts(self, limits: _Limits) -> tuple[float, float]:
        connect, read = self.timeout if isinstance(self.timeout, tuple) else (self.timeout, self.timeout)
        left = max(limits.remaining(), 0.01)
        return min(connect, left), min(read, left)

    def _deadline_error(self, source: XYZProvider, shown: str, limits: _Limits, problem: str) -> TileFetchError:
        last = f" (last problem: {problem})" if problem else ""
        return TileFetchError(
            f"{source.name}: the chip's tiles did not arrive within its {limits.deadline:g} s deadline; tile "
            f"{shown} was still pending{last}. The server is too slow or unreachable: try again later, choose "
            "another provider, or raise SAT2SOUND_TILE_DEADLINE."
        )

    def _get(self, source: XYZProvider, url: str, shown: str, limits: _Limits) -> requests.Response:
        """GET ``url`` streaming, following at most 3 redirects and only to the same host."""
        for _ in range(_MAX_REDIRECTS + 1):
            response = self.session.get(
                url, timeout=self._timeouts(limits), stream=True, allow_redirects=False, auth=source.auth
            )
            if not response.is_redirect:
                return response
            target = urljoin(url, response.headers.get("Location", ""))
            response.close()
            if not same_host(url, target):
                raise TileFetchError(
                    f"{source.name} redirected tile {shown} to another host ({source.redact(host_of(target))}); "
                    "redirects are followed only within the provider's own host. Use the final tile URL in "
                    "the template if that host is intended."
                )
            url = target
        raise TileFetchError(f"{source.name}: tile {shown} redirected more than {_MAX_REDIRECTS} times.")

    def _download(self, source: XYZProvider, tile: Tile, abort: threading.Event, limits: _Limits) -> bytes | None:
        url = source.url(*tile)
        shown = source.redact(url)
        problem = ""
        for attempt in range(self.retries + 1):
            if abort.is_set():
                raise _Abandoned(f"{source.name}: tile {shown} abandoned (another tile failed).")
            if limits.remaining() <= 0:
                raise self._deadline_error(source, shown, limits, problem)
            response: requests.Response | None = None
            try:
                response = self._get(source, url, shown, limits)
                status = response.status_code
                if status == 200:
                    data = self._read_body(source, response, shown, abort, limits)
                    return self._check_body(source, response, data, shown, limits)
            except _DeadlinePassed:
                raise self._deadline_error(source, shown, limits, problem) from None
            except requests.Timeout as exc:
                problem = describe_network_error(exc, self.timeout, source.redact)
                if limits.remaining() <= 0.05:
                    raise self._deadline_error(source, shown, limits, problem) from None
                status = 0
            except requests.RequestException as exc:
                problem = describe_network_error(exc, self.timeout, source.redact)
                status = 0
            finally:
                if response is not None:
                    _finish(response, limits)
            if status in (204, 404):
                return None
            if status in (401, 403):
                hint = (
                    f"check the key in {source.key_env}"
                    if source.key_env
                    else "the provider refuses this client; check its terms and the URL template"
                )
                raise ProviderError(f"{source.name} refused tile {shown} (HTTP {status}); {hint}.")
            if status and status not in RETRY_STATUS and status < 500:
                raise TileFetchError(f"{source.name} answered HTTP {status} for tile {shown}.")
            if status:
                problem = f"HTTP {status}"
            if attempt < self.retries:
                delay = self._sleep_for(attempt, response)
                if delay >= limits.remaining():
                    raise self._deadline_error(source, shown, limits, problem)
                log.info("tile %s: %s; retry %d/%d in %.2f s", shown, problem, attempt + 1, self.retries, delay)
                abort.wait(delay)
        raise TileFetchError(
            f"{source.name}: tile {shown} failed after {self.retries + 1} attempts ({problem}). The server may "
            "be overloaded or unreachable; try again later or choose another provider."
        )

    @staticmethod
    def _read_body(
        source: XYZProvider, response: requests.Response, shown: str, abort: threading.Event, limits: _Limits
    ) -> bytes:
        """The decoded body, read chunk by chunk under the byte cap and the deadline."""
        cap = limits.max_bytes
        declared = response.headers.get("Content-Length", "").strip()
        too_big = TileFetchError(
            f"{source.name}: tile {shown} is larger than {cap} bytes (SAT2SOUND_TILE_MAX_BYTES); real tiles are "
            "far smaller, so the server is broken or hostile. Choose another provider."
        )
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        raw = response.raw
        buf = bytearray()
        while True:
            left = limits.remaining()
            if left <= 0:
                raise _DeadlinePassed()
            if abort.is_set():
                raise _Abandoned(f"{source.name}: tile {shown} abandoned (another tile failed).")
            _set_read_timeout(raw, left)
            try:
                chunk = raw.read1(_CHUNK, decode_content=True)
            except (urllib3_exceptions.ReadTimeoutError, TimeoutError) as exc:
                if limits.remaining() <= 0.05:
                    raise _DeadlinePassed() from None
                raise requests.ReadTimeout(exc) from None
            except urllib3_exceptions.DecodeError as exc:
                raise requests.exceptions.ContentDecodingError(exc) from None
            except (urllib3_exceptions.HTTPError, OSError) as exc:
                raise requests.ConnectionError(exc) from exc
            if not chunk:
                break
            buf += chunk
            if len(buf) > cap:
                raise too_big
        return bytes(buf)

    @staticmethod
    def _check_body(
        source: XYZProvider, response: requests.Response, data: bytes, shown: str, limits: _Limits
    ) -> bytes:
        ctype = response.headers.get("Content-Type", "").lower()
        textual = ctype.startswith(("text/", "application/json", "application/xml")) or "html" in ctype
        if not textual:
            try:
                with open_tile_image(data, limits.max_pixels) as img:
                    img.verify()
                return data
            except TileImageError as exc:
                if "declares" in str(exc):
                    raise TileFetchError(f"{source.name}: tile {shown}: {exc}.") from None
            except Exception:
                pass
        head = source.redact(data[:80].decode("utf-8", "replace")).replace("\n", " ")
        raise TileFetchError(
            f"{source.name} returned something that is not an image for tile {shown} "
            f"(Content-Type {ctype or 'missing'}, starts with {head!r}). This is usually an error page: "
            "check the URL template, the key and the provider's status."
        )

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
