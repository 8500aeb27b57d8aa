"""One FLAN-T5 encoder per process, shared by Sat2Sound's text path and TangoFlux.

Both use the frozen ``google/flan-t5-large`` encoder (TangoFlux ships a copy inside
``tangoflux.safetensors``). Whoever needs it first builds it through :func:`shared_encoder`; later
callers with the same key get the same instance, so the ~1.3 GB of weights sit in memory once.

The encoder half of ``google/flan-t5-large/model.safetensors`` can be fetched alone
(:func:`download_safetensors_subset`): the safetensors header gives every tensor's byte range and the
Hub serves HTTP ranges, so the decoder's ~1.8 GB never crosses the network.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sat2sound_core.common.progress import ProgressCallback

log = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_instances: dict[str, object] = {}


def shared_encoder(key: str, build: Callable[[], T]) -> T:
    """Return the process-wide object for ``key``, building it with ``build()`` the first time.

    ``key`` names the weights' identity, not where they came from (e.g. ``"flan-t5-large@cpu/fp32"``
    whether read from google/flan-t5-large or from TangoFlux). Thread-safe: concurrent callers wait
    for one build.
    """
    with _lock:
        if key not in _instances:
            _instances[key] = build()
        return _instances[key]  # type: ignore[return-value]


def peek(key: str) -> object | None:
    """The already-built instance for ``key``, or None (never builds)."""
    with _lock:
        return _instances.get(key)


def forget(key: str | None = None) -> None:
    """Drop one cached instance (or all): for tests and for freeing memory."""
    with _lock:
        if key is None:
            _instances.clear()
        else:
            _instances.pop(key, None)


# --------------------------------------------------------------------------------------------------
# Downloading only some tensors of a remote safetensors file (HTTP range requests)

_CHUNK = 1 << 20
_MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class _Segment:
    src_begin: int  # absolute byte offset in the remote file
    length: int
    dst_begin: int  # offset in the new file's data section


def _http_range(session: Any, url: str, start: int, end: int, headers: dict[str, str], timeout: float) -> Any:
    from sat2sound_core.common.errors import DownloadError

    response = session.get(url, headers={**headers, "Range": f"bytes={start}-{end}"}, stream=True, timeout=timeout)
    if response.status_code == 200:
        response.close()
        raise DownloadError(
            f"{url} ignored the byte-range request (HTTP 200 instead of 206); refusing to download "
            "the whole file. Try again later or download the encoder weights manually."
        )
    if response.status_code != 206:
        response.close()
        raise DownloadError(f"HTTP {response.status_code} for bytes {start}-{end} of {url}.")
    return response


def remote_safetensors_header(
    url: str, headers: dict[str, str] | None = None, session: Any = None, timeout: float = 30.0
) -> tuple[int, dict[str, Any]]:
    """(header length, parsed header) of a remote safetensors file, read with two range requests."""
    import requests

    from sat2sound_core.common.errors import DownloadError

    session = session or requests.Session()
    headers = dict(headers or {})
    try:
        with _http_range(session, url, 0, 7, headers, timeout) as r:
            head = r.content
        if len(head) != 8:
            raise DownloadError(f"{url}: could not read the safetensors header length.")
        (n,) = struct.unpack("<Q", head)
        if not 0 < n < _MAX_HEADER:
            raise DownloadError(f"{url} does not look like a safetensors file (header length {n}).")
        with _http_range(session, url, 8, 8 + n - 1, headers, timeout) as r:
            raw = r.content
    except requests.RequestException as exc:
        raise DownloadError(f"Could not read the safetensors header of {url} ({exc}); check the connection.") from exc
    if len(raw) != n:
        raise DownloadError(f"{url}: short read of the safetensors header ({len(raw)} of {n} bytes).")
    return n, json.loads(raw)


def download_safetensors_subset(
    url: str,
    target: Path,
    keep: Callable[[str], bool],
    *,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
    session: Any = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Write to ``target`` a safetensors file holding only the tensors of ``url`` for which ``keep(name)``.

    Reads the remote header (two small range requests), then fetches just the byte ranges of the kept
    tensors (adjacent ones merged into one request). The new file is assembled in
    ``target.partial``; an interrupted download resumes from the bytes already there (a sidecar
    JSON records which remote header and selection they belong to). On completion it is renamed
    into place atomically. ``headers`` carries authentication (e.g. ``Authorization: Bearer``).
    """
    import requests

    from sat2sound_core.common.errors import DownloadError

    session = session or requests.Session()
    headers = dict(headers or {})
    n, header = remote_safetensors_header(url, headers, session, timeout)
    data_start = 8 + n
    names = sorted((k for k in header if k != "__metadata__" and keep(k)), key=lambda k: header[k]["data_offsets"][0])
    if not names:
        raise DownloadError(f"{url} has no tensors matching the selection.")
    new_header: dict[str, Any] = {}
    if metadata:
        new_header["__metadata__"] = dict(metadata)
    segments: list[_Segment] = []
    pos = 0
    for name in names:
        begin, end = header[name]["data_offsets"]
        new_header[name] = {"dtype": header[name]["dtype"], "shape": header[name]["shape"], "data_offsets": [pos, pos + end - begin]}
        if segments and segments[-1].src_begin + segments[-1].length == data_start + begin:
            last = segments[-1]
            segments[-1] = _Segment(last.src_begin, last.length + end - begin, last.dst_begin)
        else:
            segments.append(_Segment(data_start + begin, end - begin, pos))
        pos += end - begin
    total = pos
    blob = json.dumps(new_header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    prefix = struct.pack("<Q", len(blob)) + blob

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    plan_file = target.with_name(target.name + ".partial.json")
    plan = {"url_header_sha": _sha(json.dumps(header, sort_keys=True)), "names": names, "prefix": len(prefix)}
    resume_ok = partial.is_file() and plan_file.is_file() and _read_json(plan_file) == plan
    if not resume_ok:
        with open(partial, "wb") as f:
            f.write(prefix)
        plan_file.write_text(json.dumps(plan))
    else:
        log.info("resuming %s at %d of %d bytes", target.name, partial.stat().st_size - len(prefix), total)

    attempt = 0
    while True:
        done = partial.stat().st_size - len(prefix)
        if done >= total:
            break
        try:
            _fetch_from(session, url, headers, timeout, segments, done, partial, total, progress)
        except (requests.RequestException, OSError) as exc:
            attempt += 1
            if attempt >= retries:
                raise DownloadError(
                    f"Downloading the encoder from {url} failed ({exc}); run again to resume "
                    f"({partial.stat().st_size - len(prefix)} of {total} bytes are kept in {partial})."
                ) from exc
            log.warning("range download interrupted (%s); resuming", exc)
    if partial.stat().st_size != len(prefix) + total:
        raise DownloadError(f"{partial} has an unexpected size; delete it and download again.")
    os.replace(partial, target)
    plan_file.unlink(missing_ok=True)
    return target


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fetch_from(
    session: Any, url: str, headers: dict[str, str], timeout: float, segments: list[_Segment], done: int,
    partial: Path, total: int, progress: ProgressCallback | None,
) -> None:
    from sat2sound_core.common.errors import DownloadError

    with open(partial, "ab") as out:
        for seg in segments:
            if seg.dst_begin + seg.length <= done:
                continue
            skip = max(0, done - seg.dst_begin)
            start, end = seg.src_begin + skip, seg.src_begin + seg.length - 1
            got = 0
            with _http_range(session, url, start, end, headers, timeout) as r:
                for chunk in r.iter_content(_CHUNK):
                    if not chunk:
                        continue
                    if got + len(chunk) > end - start + 1:
                        raise DownloadError(f"{url} sent more bytes than requested for {start}-{end}.")
                    out.write(chunk)
                    got += len(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total, "downloading the FLAN-T5 encoder")
            out.flush()
            if got != end - start + 1:
                raise OSError(f"connection ended after {got} of {end - start + 1} bytes")
