"""Builders for hostile files (torch zips with spliced pickles) and a subprocess runner for crashes/hangs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def tiny_official_state() -> dict[str, torch.Tensor]:
    """A few tensors under the official prefixes (enough for the file-level checks)."""
    return {
        "fdt.space_dict": torch.randn(8, 4),
        "satmae_backbone.backbone.patch_embed.proj.weight": torch.randn(2, 3, 1, 1),
        "satmae_backbone.projector.linear2.weight": torch.randn(4, 4),
        "audio_encoder.model.audio_enc.bn0.weight": torch.randn(4),
    }


class Marker:
    """Pickles as a unique string, so its bytes can be replaced by a hand-written pickle fragment."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (str, (f"@@{self.tag}@@",))


def torch_zip_with(path: Path, obj: object, fragments: dict[str, bytes]) -> Path:
    """``torch.save(obj)`` with each ``Marker(tag)``'s pickle replaced by ``fragments[tag]`` (raw opcodes)."""
    torch.save(obj, path, pickle_protocol=2)
    with zipfile.ZipFile(path) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            if name.endswith("/data.pkl"):
                for tag, raw in fragments.items():
                    # a Marker pickles as GLOBAL str (protocol 2 spells it __builtin__ unicode), the text, TUPLE1, REDUCE
                    text = f"@@{tag}@@".encode()
                    start = data.index(b"X" + len(text).to_bytes(4, "little") + text)
                    glob = max(data.rfind(g, 0, start) for g in (b"c__builtin__\nunicode\n", b"c__builtin__\nstr\n",
                                                                  b"cbuiltins\nstr\n"))
                    end = data.index(b"R", start + 5 + len(text)) + 1
                    assert glob >= 0 and end > start
                    data = data[:glob] + raw + data[end:]
            z.writestr(name, data)
    path.write_bytes(out.getvalue())
    return path


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter from the repository root (a crash or hang fails a test, not pytest)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
