"""A loopback XYZ tile server for tests whose tiles encode their own global pixel coordinates.

Every pixel of tile (z, x, y) holds ``R = gx % 256``, ``G = gy % 256`` and
``B = (x % 16) * 16 + (y % 16)``, where (gx, gy) is the pixel's global position at zoom z. A test can
therefore assert that a mosaicked chip is placed pixel-exactly (:func:`expected_window` builds the
expected pixels of any window, antimeridian wrap included). Faults are injected in order with
:meth:`TileServer.add_fault` to exercise retries and error messages.

Use it as a context manager::

    with TileServer() as server:
        provider = tiles.XYZProvider(server.url_template, "test tiles", max_zoom=20)
        chip = tiles.fetch_chip(45.0, 7.0, "bingmap", provider)
        assert server.request_count == 49  # 7×7 tiles of 256 px for this 1500-px window

It listens on 127.0.0.1 with an OS-chosen port, in daemon threads; PNG tiles (exact) by default.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

FAULTS = ("429", "500", "403", "html", "placeholder", "blank", "slow", "404", "garbage", "transparent")


def coordinate_tile(z: int, x: int, y: int, size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 pixels of tile (z, x, y) with global pixel coordinates encoded."""
    gx = (np.arange(size) + x * size) % 256
    gy = (np.arange(size) + y * size) % 256
    tile = np.empty((size, size, 3), dtype=np.uint8)
    tile[..., 0] = gx[None, :]
    tile[..., 1] = gy[:, None]
    tile[..., 2] = ((x % 16) * 16 + (y % 16)) % 256
    return tile


def expected_window(z: int, left: int, top: int, width: int, height: int, size: int = 256) -> np.ndarray:
    """The pixels a correct mosaic of the window [left, left+width) × [top, top+height) holds."""
    n = 1 << z
    gx = np.arange(left, left + width)
    gy = np.arange(top, top + height)
    tx = (gx // size) % n
    ty = gy // size
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[..., 0] = ((gx % size) + (gx // size) * size)[None, :] % 256
    out[..., 1] = gy[:, None] % 256
    out[..., 2] = ((tx[None, :] % 16) * 16 + (ty[:, None] % 16)) % 256
    return out


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """Image bytes of an (H, W, 3|4) uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def _placeholder_pixels(size: int) -> np.ndarray:
    tile = np.full((size, size, 3), 200, dtype=np.uint8)
    tile[size // 2 - 8 : size // 2 + 8, 32:-32] = 90  # a bar, like a "no imagery" message
    return tile


def quadkey_to_tile(quadkey: str) -> tuple[int, int, int]:
    """(z, x, y) of a Bing quadkey."""
    x = y = 0
    for digit in quadkey:
        x, y = x * 2 + (int(digit) & 1), y * 2 + (int(digit) >> 1)
    return len(quadkey), x, y


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the default backlog of 5 makes concurrent clients wait for SYN retries (1 s)


@dataclass
class _Fault:
    kind: str
    remaining: int | None  # None: forever


class TileServer:
    """Threaded loopback tile server (see the module docstring).

    ``url_template`` is ``http://127.0.0.1:PORT/{z}/{x}/{y}.png``; ``quadkey_template`` the ``{q}`` form.
    ``request_count`` counts tile requests (``requests`` lists their paths); ``reset_counts()`` zeroes
    them. ``add_fault(kind, times=1)`` queues a fault for the next ``times`` tile requests (None: all):
    ``429``/``500``/``403`` status, ``html`` (an error page with status 200), ``placeholder`` (a grey "no imagery"
    tile, sha256 in ``placeholder_sha256``), ``blank`` (a uniform tile), ``slow`` (sleeps
    ``slow_seconds`` first), ``404``, ``garbage`` (non-image bytes labelled image/png), ``transparent``.
    """

    def __init__(self, fmt: str = "png", tile_size: int = 256, slow_seconds: float = 0.6) -> None:
        self.fmt = fmt
        self.tile_size = tile_size
        self.slow_seconds = slow_seconds
        self.requests: list[str] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int, int], bytes] = {}
        self.placeholder = encode(_placeholder_pixels(tile_size), "PNG")
        self.placeholder_sha256 = hashlib.sha256(self.placeholder).hexdigest()
        self.user_agents: set[str] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    def start(self) -> TileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="tileserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> TileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- API ---
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{z}}/{{x}}/{{y}}.{self.fmt}"

    @property
    def quadkey_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/q/{{q}}.{self.fmt}"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def add_fault(self, kind: str, times: int | None = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; use one of {FAULTS}")
        with self._lock:
            self._faults.append(_Fault(kind, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def tile_bytes(self, z: int, x: int, y: int) -> bytes:
        key = (z, x, y)
        if key not in self._cache:
            fmt = "JPEG" if self.fmt in ("jpg", "jpeg") else "PNG"
            self._cache[key] = encode(coordinate_tile(z, x, y, self.tile_size), fmt)
        return self._cache[key]

    # --- internals ---
    def _next_fault(self) -> str | None:
        with self._lock:
            while self._faults:
                fault = self._faults[0]
                if fault.remaining is None:
                    return fault.kind
                if fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.popleft()
                    return fault.kind
                self._faults.popleft()
            return None

    def _parse(self, path: str) -> tuple[int, int, int] | None:
        parts = path.split("?")[0].strip("/").split("/")
        try:
            if len(parts) == 2 and parts[0] == "q":
                return quadkey_to_tile(parts[1].split(".")[0])
            if len(parts) == 3:
                return int(parts[0]), int(parts[1]), int(parts[2].split(".")[0])
        except ValueError:
            return None
        return None

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        if status == 429:
            handler.send_header("Retry-After", "0")
        handler.end_headers()
        handler.wfile.write(body)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(handler.path)
            self.user_agents.add(handler.headers.get("User-Agent", ""))
        tile = self._parse(handler.path)
        if tile is None:
            self._send(handler, 400, b"bad path", "text/plain")
            return
        z, x, y = tile
        if not (0 <= x < (1 << z) and 0 <= y < (1 << z)):
            self._send(handler, 404, b"no such tile", "text/plain")
            return
        fault = self._next_fault()
        ctype = "image/jpeg" if self.fmt in ("jpg", "jpeg") else "image/png"
        try:
            if fault == "slow":
                time.sleep(self.slow_seconds)
            if fault in ("429", "500", "403", "404"):
                self._send(handler, int(fault), b"<html><body>error</body></html>", "text/html")
            elif fault == "html":
                self._send(handler, 200, b"<!DOCTYPE html><html><body>Service unavailable</body></html>", "text/html")
            elif fault == "garbage":
                self._send(handler, 200, b"\x00\x01not really an image", "image/png")
            elif fault == "placeholder":
                self._send(handler, 200, self.placeholder, "image/png")
            elif fault == "blank":
                body = encode(np.full((self.tile_size, self.tile_size, 3), 128, dtype=np.uint8))
                self._send(handler, 200, body, "image/png")
            elif fault == "transparent":
                body = encode(np.zeros((self.tile_size, self.tile_size, 4), dtype=np.uint8))
                self._send(handler, 200, body, "image/png")
            else:
                self._send(handler, 200, self.tile_bytes(z, x, y), ctype)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout tests)
            pass
