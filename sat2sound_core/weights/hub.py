"""The one place that talks to the Hugging Face Hub.

* :func:`fetch` — a checkpoint-sized file (a registry name, ``hf-hub:`` reference or local path):
  a copy in the weights folder, a Hugging Face cache, or a resumable download.
* :func:`fetch_file` — a small file of a repo (a config, a tokenizer file) from the caches or the Hub.
* :func:`fetch_repo_files` — several files of one repo into one snapshot folder (TangoFlux, the
  FLAN-T5 tokenizer files).
* :func:`download_safetensors_subset` — only some tensors of a remote safetensors file: the header
  gives every tensor's byte range and the Hub serves HTTP ranges, so the FLAN-T5 encoder is fetched
  without the decoder's ~1.8 GB.
* :func:`progress_bar_class` — the one adapter from huggingface_hub's tqdm bars to our
  ``(done, total, message)`` progress callback.

Offline mode (``SAT2SOUND_OFFLINE`` or ``HF_HUB_OFFLINE``) limits the ``fetch*`` functions to local
copies and caches, and their errors then say what to download and where to put it. The mirror in
``HF_ENDPOINT`` is read on every call (:attr:`~sat2sound_core.common.settings.Settings.hf_endpoint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sat2sound_core.common import files
from sat2sound_core.common.errors import DownloadError, WeightsError
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.common.settings import get_settings

if TYPE_CHECKING:
    import requests
    from tqdm import tqdm

    from sat2sound_core.weights.registry import ResolvedSource

log = logging.getLogger(__name__)

#: a progress callback: ``(done, total, message)``
#: the message for files that are missing and cannot be downloaded: ``(repo, {file: bytes}, reason)``
Explain = Callable[[str, dict[str, int], str], str]

_OFFLINE_HINT = "allow downloads (unset HF_HUB_OFFLINE and SAT2SOUND_OFFLINE)"


# --------------------------------------------------------------------------------------------------
# Sizes and progress


def human_size(n: int) -> str:
    """``3437051960`` → ``"3.44 GB"``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    return f"{size:.2f} TB"


def approx_size(n: int | None) -> str:
    """A rough size for messages and listings: ``"≈0.67 GB"``, ``"≈669 MB"`` or ``"size unknown"``."""
    return f"≈{n / 1e9:.2f} GB" if n and n >= 1e9 else (f"≈{n / 1e6:.0f} MB" if n else "size unknown")


def progress_bar_class(progress: ProgressCallback | None, label: str) -> type[tqdm] | None:
    """A tqdm class for huggingface_hub's ``tqdm_class`` that draws nothing and reports each byte count
    to ``progress`` as ``(done, total, "downloading <label>")``; None without a callback (huggingface_hub
    then draws its own bar)."""
    if progress is None:
        return None
    from tqdm.auto import tqdm

    class _Forward(tqdm):
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.pop("name", None)  # only huggingface_hub's own tqdm takes a name
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            initial = kwargs.get("initial")
            self._done = float(initial) if isinstance(initial, int | float) else 0.0

        def update(self, n: float | None = 1) -> bool | None:
            self._done += float(n or 0)
            report(progress, self._done, max(float(self.total or 0), self._done), f"downloading {label}")
            return None

    return _Forward


# --------------------------------------------------------------------------------------------------
# Local copies and caches


def local_copy(filename: str, weights_dir: Path) -> Path | None:
    """The copy of the Hub file ``filename`` that was put in the weights folder — at its path in the
    repo (``weights/sat2sound/x.ckpt``) or flat (``weights/x.ckpt``) — or None."""
    for candidate in (weights_dir / filename, weights_dir / Path(filename).name):
        if candidate.is_file():
            return candidate
    return None


def cached_file(repo_id: str, filename: str, weights_dir: Path, revision: str | None = None) -> Path | None:
    """``filename`` of ``repo_id`` from a Hugging Face cache — the product's (``weights/hf``), then the
    user's — without touching the network, or None."""
    for cache in (weights_dir / "hf", None):
        found = _cached_in(repo_id, [filename], cache, revision)
        if filename in found:
            return found[filename]
    return None


def _cached_in(repo: str, names: Iterable[str], cache: Path | None, revision: str | None) -> dict[str, Path]:
    """The files ``names`` of ``repo`` found in one Hugging Face cache (None: the user's default one)."""
    from huggingface_hub import hf_hub_download

    found: dict[str, Path] = {}
    for name in names:
        try:
            found[name] = Path(hf_hub_download(repo, name, revision=revision, cache_dir=cache, local_files_only=True))
        except Exception:  # not cached there (or that cache is unreadable)
            continue
    return found


# --------------------------------------------------------------------------------------------------
# Whole files


def fetch(
    resolved: ResolvedSource,
    weights_dir: Path,
    offline: bool,
    progress: ProgressCallback | None = None,
    endpoint: str | None = None,
) -> Path:
    """The local file for ``resolved``: the local path, a copy in ``weights_dir`` or in a Hugging Face
    cache (``weights_dir/hf``, then the user's), or a Hub download.

    Downloads go through ``huggingface_hub.hf_hub_download`` into ``weights_dir`` (resumable: an
    interrupted download continues where it stopped). When ``offline`` only local copies and the
    caches are used, and a missing file raises :class:`DownloadError` saying what to download, how
    big it is and where to put it.
    """
    if resolved.kind == "local":
        assert resolved.path is not None
        return resolved.path
    assert resolved.repo_id and resolved.filename
    local = local_copy(resolved.filename, weights_dir)
    if local is not None:
        log.info("using local weights %s", local)
        return local
    cached = cached_file(resolved.repo_id, resolved.filename, weights_dir)
    if cached is not None:
        return cached
    size = resolved.info.approx_bytes if resolved.info else None
    if offline:
        url = f"https://huggingface.co/{resolved.repo_id}/resolve/main/{resolved.filename}"
        raise DownloadError(
            f"{resolved.label} is not available offline. Download {resolved.filename} "
            f"({approx_size(size)}) from {url} and put it at {weights_dir / resolved.filename}, "
            f"or {_OFFLINE_HINT}."
        )
    log.info("downloading %s/%s (%s) into %s", resolved.repo_id, resolved.filename, approx_size(size), weights_dir)
    try:
        return download(resolved.repo_id, resolved.filename, weights_dir, progress=progress, endpoint=endpoint)
    except Exception as exc:
        raise DownloadError(
            f"Could not download {resolved.filename} from the Hugging Face repo {resolved.repo_id} "
            f"({exc.__class__.__name__}: {exc}). Check the connection and retry (the download resumes), "
            f"or put the file at {weights_dir / resolved.filename} yourself."
        ) from exc


def download(
    repo_id: str, filename: str, local_dir: Path, *, progress: ProgressCallback | None = None, endpoint: str | None = None
) -> Path:
    """Download ``filename`` of ``repo_id`` to ``local_dir/filename`` (resumable), reporting its bytes to
    ``progress``. Raises what ``huggingface_hub`` raises; callers turn it into a message that names the fix."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(
        repo_id, filename, local_dir=local_dir, endpoint=endpoint or get_settings().hf_endpoint,
        tqdm_class=progress_bar_class(progress, filename),
    ))


def fetch_file(repo_id: str, filename: str, *, needed_for: str, folder: Path) -> Path:
    """A small file of ``repo_id`` from the Hugging Face caches or, when allowed, the Hub (into the
    product's cache). Offline, the error says the file is ``needed_for`` something and may be put in
    ``folder``."""
    from huggingface_hub import hf_hub_download

    settings = get_settings()
    cached = cached_file(repo_id, filename, settings.weights)
    if cached is not None:
        return cached
    if settings.is_offline:
        raise DownloadError(
            f"{repo_id}/{filename} is needed for {needed_for} but offline mode is on. Download it from "
            f"https://huggingface.co/{repo_id} into {folder} or {_OFFLINE_HINT}."
        )
    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=settings.weights / "hf", endpoint=settings.hf_endpoint))
    except Exception as exc:
        raise DownloadError(f"Could not download {repo_id}/{filename}: {exc}") from exc


def missing_files_message(repo: str, wanted: dict[str, int], reason: str) -> str:
    """The default message for files of ``repo`` that are not here and cannot be downloaded."""
    listing = ", ".join(f"{name} ({human_size(size)})" for name, size in wanted.items())
    return (
        f"Needed from Hugging Face `{repo}`: {listing}; not available locally ({reason}). Allow downloads "
        f"(unset HF_HUB_OFFLINE and SAT2SOUND_OFFLINE) or fetch them yourself with "
        f"`huggingface-cli download {repo} {' '.join(wanted)}`."
    )


def fetch_repo_files(
    repo: str,
    wanted: dict[str, int],
    *,
    revision: str | None = None,
    progress: ProgressCallback | None = None,
    required: Iterable[str] | None = None,
    explain: Explain = missing_files_message,
) -> tuple[Path, str]:
    """Download (or find in a cache) the files ``wanted`` (name → approximate bytes) of ``repo``;
    return (snapshot folder, commit).

    A cache that already holds every required file is used as it is: the product's
    (``SAT2SOUND_WEIGHTS_DIR/hf``) first, then the default Hugging Face cache. Otherwise the rest is
    downloaded into the product's cache, so all files share one snapshot folder. Files not in
    ``required`` (default: all) may be absent from the repo. Offline, or when a download fails,
    ``explain(repo, files, reason)`` gives the error message.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    settings = get_settings()
    need = set(wanted if required is None else required)
    ours = settings.weights / "hf"
    paths = _cached_in(repo, wanted, ours, revision)
    if not need <= set(paths):
        user = _cached_in(repo, wanted, None, revision)
        if need <= set(user):
            paths = user
        else:
            missing = {n: s for n, s in wanted.items() if n not in paths and n in need}
            if settings.is_offline:
                raise DownloadError(explain(repo, missing, "offline mode is on"))
            for name in [n for n in wanted if n not in paths]:
                log.info("downloading %s/%s (%s)", repo, name, human_size(wanted[name]))
                try:
                    got = hf_hub_download(
                        repo, name, revision=revision, cache_dir=ours, endpoint=settings.hf_endpoint,
                        tqdm_class=progress_bar_class(progress, name),
                    )
                except EntryNotFoundError:
                    if name in need:
                        raise DownloadError(f"{repo} has no file {name}; is {repo!r} the right repo?") from None
                    continue
                except Exception as exc:  # network, auth, disk: say what was being fetched and how to do it by hand
                    raise DownloadError(explain(repo, {name: wanted[name]}, f"download failed: {exc}")) from exc
                paths[name] = Path(got)
    folders = {p.parent for p in paths.values()}
    if len(folders) != 1:
        raise WeightsError(f"files of {repo} were found in different snapshots: {sorted(map(str, folders))}")
    folder = folders.pop()
    return folder, folder.name  # Hugging Face snapshot folders are named by commit


# --------------------------------------------------------------------------------------------------
# Downloading only some tensors of a remote safetensors file (HTTP range requests)

_CHUNK = 1 << 20
_MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class _Segment:
    src_begin: int  # absolute byte offset in the remote file
    length: int
    dst_begin: int  # offset in the new file's data section


def _http_range(
    session: requests.Session, url: str, start: int, end: int, headers: dict[str, str], timeout: float
) -> requests.Response:
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
    url: str, headers: dict[str, str] | None = None, session: requests.Session | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, Any]]:
    """(header length, parsed JSON header) of a remote safetensors file, read with two range requests."""
    import requests

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
    header: dict[str, Any] = json.loads(raw)
    return n, header


def download_safetensors_subset(
    url: str,
    target: Path,
    keep: Callable[[str], bool],
    *,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
    session: requests.Session | None = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Write to ``target`` a safetensors file holding only the tensors of ``url`` for which ``keep(name)``.

    Reads the remote header (two small range requests), then fetches just the byte ranges of the kept
    tensors (adjacent ones merged into one request). The new file is assembled in
    ``target.partial``; an interrupted download resumes from the bytes already there (a sidecar
    JSON records which remote header and selection they belong to). On completion it is moved into
    place atomically. ``headers`` carries authentication (e.g. ``Authorization: Bearer``).
    """
    import requests

    session = session or requests.Session()
    headers = dict(headers or {})
    n, header = remote_safetensors_header(url, headers, session, timeout)
    data_start = 8 + n
    names = sorted((k for k in header if k != "__metadata__" and keep(k)), key=lambda k: header[k]["data_offsets"][0])
    if not names:
        raise DownloadError(f"{url} has no tensors matching the selection.")
    new_header: dict[str, object] = {}
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
        files.write_text(plan_file, json.dumps(plan))
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
    files.move_into_place(partial, target)
    plan_file.unlink(missing_ok=True)
    return target


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fetch_from(
    session: requests.Session, url: str, headers: dict[str, str], timeout: float, segments: list[_Segment], done: int,
    partial: Path, total: int, progress: ProgressCallback | None,
) -> None:
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
                    report(progress, done, total, "downloading the FLAN-T5 encoder")
            out.flush()
            if got != end - start + 1:
                raise OSError(f"connection ended after {got} of {end - start + 1} bytes")
