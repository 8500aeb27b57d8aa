"""A loopback HTTP server that misbehaves on purpose, for the hostile-input tests of :mod:`tiles`.

The first path segment picks the behaviour; the rest is ``{z}/{x}/{y}.png`` so it can serve as an XYZ
template (``server.template("trickle")``):

``ok`` a normal coordinate tile (``tileserver.coordinate_tile``); ``noise`` an incompressible one; ``trickle`` one byte every 0.5 s;
``endless`` a chunked body that never ends (until ``endless_limit`` bytes, so a broken client cannot
keep the test running for ever); ``gzip`` a gzip bomb (``bomb_size`` zero bytes compressed to ~1/1000);
``huge`` a valid PNG declaring 12000×12000 px; ``silent`` accepts the request and answers nothing for
``silent_seconds``; ``reset`` resets the TCP connection; ``redirect-meta`` redirects to the link-local
metadata address; ``redirect-to`` redirects to ``redirect_target`` (another server); ``missing`` a 404 with a body; ``redirect-same``
redirects to the ``ok`` tile on this host. Every request is counted and its headers kept. Everything
runs in daemon threads and every behaviour ends on its own within ~30 s.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from tests.tiles.tileserver import coordinate_tile, encode

BOMB_SIZE = 512 * 1024 * 1024


@lru_cache(maxsize=2)
def gzip_bomb(size: int = BOMB_SIZE) -> bytes:
    """A gzip stream of ``size`` zero bytes (about size / 1000 bytes long)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [comp.compress(block) for _ in range(size >> 20)]
    parts.append(comp.flush())
    return b"".join(parts)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=2)
def huge_png(side: int = 12000) -> bytes:
    """A valid RGB PNG of side × side black pixels (a few hundred KB; 3·side² bytes once decoded)."""
    comp = zlib.compressobj(9)
    row = bytes(1 + 3 * side)  # filter byte 0 + black pixels
    rows_per_block = 256
    parts = []
    for start in range(0, side, rows_per_block):
        parts.append(comp.compress(row * min(rows_per_block, side - start)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128


class HostileServer:
    """The misbehaving loopback server (see the module docstring); use as a context manager."""

    def __init__(self, silent_seconds: float = 10.0, endless_limit: int = 256 * 1024 * 1024) -> None:
        self.silent_seconds = silent_seconds
        self.endless_limit = endless_limit
        self.redirect_target = ""
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.client_ports: list[int] = []  # one entry per request: how many connections served them
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    def template(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{{z}}/{{x}}/{{y}}.png"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.paths)

    def __enter__(self) -> HostileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with server._lock:
                    server.paths.append(self.path)
                    server.headers.append(dict(self.headers.items()))
                    server.client_ports.append(int(self.client_address[1]))
                try:
                    server._handle(self)
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, name="hostile", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _headers(self, h: BaseHTTPRequestHandler, status: int, fields: dict[str, str]) -> None:
        h.send_response(status)
        for name, value in fields.items():
            h.send_header(name, value)
        h.end_headers()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = h.path.split("?")[0].strip("/").split("/")
        kind = parts[0]
        z, x, y = (int(parts[1]), int(parts[2]), int(parts[3].split(".")[0])) if len(parts) == 4 else (1, 0, 0)
        if kind in ("ok", "noise"):
            pixels = coordinate_tile(z, x, y)
            if kind == "noise":  # incompressible (~200 KB): fills cache pages
                pixels = np.random.default_rng(z * 1_000_003 + x * 1009 + y).integers(0, 256, pixels.shape, np.uint8)
            body = encode(pixels)
            self._headers(h, 200, {"Content-Type": "image/png", "Content-Length": str(len(body))})
            h.wfile.write(body)
        elif kind == "trickle":
            body = encode(coordinate_tile(z, x, y))
            self._headers(h, 200, {"Content-Type": "image/png", "Content-Length": str(len(body))})
            end = time.monotonic() + 30
            for i in range(len(body)):
                if time.monotonic() > end:
                    break
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                time.sleep(0.5)
            h.close_connection = True
        elif kind == "endless":
            self._headers(h, 200, {"Content-Type": "image/png", "Transfer-Encoding": "chunked"})
            head = encode(coordinate_tile(z, x, y))
            chunk = head + bytes(64 * 1024 - len(head) % (64 * 1024))
            sent, end = 0, time.monotonic() + 30
            while sent < self.endless_limit and time.monotonic() < end:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                chunk = bytes(64 * 1024)
            h.close_connection = True
        elif kind == "gzip":
            body = gzip_bomb()
            self._headers(h, 200, {"Content-Type": "image/png", "Content-Encoding": "gzip",
                                   "Content-Length": str(len(body))})
            h.wfile.write(body)
        elif kind == "huge":
            body = huge_png()
            self._headers(h, 200, {"Content-Type": "image/png", "Content-Length": str(len(body))})
            h.wfile.write(body)
        elif kind == "silent":
            time.sleep(self.silent_seconds)
            h.close_connection = True
        elif kind == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
        elif kind == "redirect-meta":
            self._headers(h, 302, {"Location": "http://169.254.169.254/latest/meta-data/", "Content-Length": "0"})
        elif kind == "redirect-to":
            self._headers(h, 302, {"Location": f"{self.redirect_target}/{z}/{x}/{y}.png", "Content-Length": "0"})
        elif kind == "missing":  # a 404 with a short body, as tile servers send for absent tiles
            self._headers(h, 404, {"Content-Type": "text/plain", "Content-Length": "12"})
            h.wfile.write(b"no such tile")
        elif kind == "redirect-same":
            self._headers(h, 302, {"Location": f"/ok/{z}/{x}/{y}.png", "Content-Length": "0"})
        else:
            self._headers(h, 404, {"Content-Length": "0"})
