"""The one atomic-write helper: files land whole, with the umask's mode, and a failure leaves nothing."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sat2sound_core.common import files


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path, umask_022: None) -> None:
    assert files.current_umask() == 0o022
    written = files.write_bytes(tmp_path / "new" / "a.bin", b"abc")  # missing folders are created
    assert written.read_bytes() == b"abc" and _mode(written) == 0o644
    os.umask(0o027)
    assert _mode(files.write_text(tmp_path / "b.txt", "é")) == 0o640
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "é"


def test_a_failing_writer_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.atomic_write(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "x.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        files.atomic_write(tmp_path / "x.bin", boom)
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"] and (tmp_path / "x.bin").read_bytes() == b"old"


def test_any_writer_can_fill_the_temporary_path(tmp_path: Path) -> None:
    target = tmp_path / "m.npy"
    with files.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".m.npy.") and tmp.name.endswith(files.TEMP_SUFFIX)
        with open(tmp, "wb") as fh:
            np.save(fh, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["m.npy"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 100_000 for i in range(8)]
    threads = [threading.Thread(target=files.write_bytes, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads  # one whole payload, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_write_with_sidecar(tmp_path: Path, umask_022: None) -> None:
    data, side = files.write_with_sidecar(tmp_path / "clip.wav", b"RIFF", {"b": 1, "a": [1, 2]})
    assert data.read_bytes() == b"RIFF" and side == tmp_path / "clip.json"
    assert json.loads(side.read_text()) == {"a": [1, 2], "b": 1}
    assert side.read_bytes() == files.sidecar_bytes({"a": [1, 2], "b": 1})  # keys sorted: stable bytes
    assert _mode(data) == _mode(side) == 0o644
