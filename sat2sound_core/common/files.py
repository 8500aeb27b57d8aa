"""The one way this library puts a file in place: written beside its target, then renamed over it.

A reader (another thread, process, or a rerun after a crash) sees either the old file or the complete
new one, never half of one. The temporary file lives in the target's folder (a rename across file
systems is not atomic), has a unique name (concurrent writers never share one), is flushed to disk
before the rename, and gets the permissions a plain ``open()`` would give it under the process umask
(``mkstemp`` makes files private to the owner, which must not survive the rename). Folders that do
not exist yet are created.

``tiles`` keeps its own copy of this rule (it must not import the core).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

#: ending of every temporary file written here (``.<name>.<random>.tmp`` beside the target)
TEMP_SUFFIX = ".tmp"

_umask_lock = threading.Lock()
#: when this process started using this module; temp files older than this belong to earlier processes
PROCESS_START = time.time()
#: ``.<name>.<8 random characters>.tmp``, the names :func:`atomic_path` gives (``tempfile.mkstemp``)
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split(":", 1)[1].strip(), 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # elsewhere: set and restore (the lock keeps other writers here consistent)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on a clean exit it is synced and renamed onto it.

    The caller writes the temporary path with whatever writer it likes (``safetensors.save_file``,
    ``h5py.File``, ``rasterio.open``, ``np.save``). On an exception the temporary file is removed and
    ``target`` is left as it was. ``mode`` is masked by the umask, as ``open()`` would do.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    if not _lock_writer(fd):  # held until the rename: remove_stale_temps never takes a live writer's file
        os.close(fd)
        fd = -1
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode & ~current_umask())
        with open(tmp, "rb+") as f:  # the writer may have closed it without syncing
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    _sync_folder(target.parent)


def atomic_write(target: str | os.PathLike[str], write: Callable[[Path], None], mode: int = 0o666) -> Path:
    """Call ``write(temporary_path)`` and put the result at ``target`` atomically; returns ``target``."""
    with atomic_path(target, mode) as tmp:
        write(tmp)
    return Path(target)


def write_bytes(target: str | os.PathLike[str], data: bytes, mode: int = 0o666) -> Path:
    """Write ``data`` to ``target`` atomically (see the module docstring); returns ``target``."""
    def _write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(target, _write, mode)


def write_text(target: str | os.PathLike[str], text: str, mode: int = 0o666) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically; returns ``target``."""
    return write_bytes(target, text.encode("utf-8"), mode)


def move_into_place(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Put a finished file that was written elsewhere under its own name (a resumable download's
    ``.partial``, which must outlive an interrupted run) at ``target`` atomically; returns ``target``.

    ``source`` must be in the target's folder. It is synced before the rename, as in
    :func:`atomic_path`.
    """
    source, target = Path(source), Path(target)
    if source.parent.resolve() != target.parent.resolve():
        raise ValueError(f"{source} is not in the folder of {target}; a rename across folders may not be atomic")
    with open(source, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(source, target)
    _sync_folder(target.parent)
    return target


def sidecar_path(target: str | os.PathLike[str]) -> Path:
    """The JSON sidecar that describes ``target``: same folder and stem, ``.json`` (``clip.wav`` → ``clip.json``)."""
    return Path(target).with_suffix(".json")


def sidecar_bytes(sidecar: Mapping[str, object]) -> bytes:
    """A sidecar's content as written: UTF-8 JSON, indented, keys sorted (stable across runs)."""
    return json.dumps(dict(sidecar), indent=2, sort_keys=True).encode()


def write_with_sidecar(
    target: str | os.PathLike[str], data: bytes, sidecar: Mapping[str, object], mode: int = 0o666
) -> tuple[Path, Path]:
    """Write ``data`` to ``target`` and ``sidecar`` (JSON) to :func:`sidecar_path`, each atomically.

    The data file is written first, so a sidecar on disk always describes a complete file beside it.
    Returns (target, sidecar path).
    """
    path = write_bytes(target, data, mode)
    return path, write_bytes(sidecar_path(path), sidecar_bytes(sidecar), mode)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lock_writer(fd: int) -> bool:
    """Mark a temp file as being written (an advisory lock the kernel drops when the writer dies).

    Returns whether ``fd`` must stay open to hold the lock (not where there is no ``flock``: an open
    file cannot be renamed on Windows, where only the age rule of :func:`remove_stale_temps` applies).
    """
    try:
        import fcntl
    except ImportError:
        return False
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True


def _held_by_a_writer(path: Path) -> bool:
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone or unreadable: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return False


def remove_stale_temps(folder: str | os.PathLike[str], older_than: float | None = None) -> list[Path]:
    """Remove temp files of :func:`atomic_path`'s own naming that an interrupted writer left in ``folder``.

    A file is removed only when its name is ``.<name>.<random>.tmp``, it was last modified before
    ``older_than`` (default: when this process started) and no live writer holds it (the writer's
    lock dies with its process, e.g. after a SIGKILL). Nothing else in the folder is touched; errors
    are ignored (the cleanup is best effort). Returns the removed paths.
    """
    limit = PROCESS_START if older_than is None else older_than
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMP_NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= limit:
                continue
        except OSError:
            continue
        path = Path(entry.path)
        if _held_by_a_writer(path):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed
