"""The one way :mod:`tiles` puts a file in place: written beside its target, then renamed over it.

``tiles`` must not import ``sat2sound_core``, so this is its own copy of the rule in
``sat2sound_core.common.files``: the temporary file lives in the target's folder (a rename across file
systems is not atomic), has a unique name (concurrent writers never share one), is flushed to disk
before the rename, and gets the permissions a plain ``open()`` would give it under the process umask
(``mkstemp`` makes files private to the owner, which must not survive the rename). A reader sees the
old file or the complete new one, never half of one. Every tiles writer (:func:`tiles.geotiff.write_raster`)
goes through :func:`atomic_path`; the tile cache writes through SQLite transactions instead.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

#: ending of every temporary file written here (``.<name>.<random>.tmp`` beside the target)
TEMP_SUFFIX = ".tmp"

_umask_lock = threading.Lock()


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

    The caller writes the temporary path with any writer (``rasterio.open(tmp, "w", ...)``). On an
    exception the temporary file is removed and ``target`` is left as it was. Missing folders are
    created; ``mode`` is masked by the umask, as ``open()`` would do.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
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
    _sync_folder(target.parent)


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
