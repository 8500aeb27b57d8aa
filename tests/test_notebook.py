"""notebooks/quickstart.ipynb runs top to bottom (nbclient) on synthetic tiny weights, loopback tiles
and a synthetic gallery, configured only through the environment variables the notebook documents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path: Path, product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    from sat2sound_core.gallery import write_gallery
    from tests.fixtures.tiny_model import write_tiny_weights
    from tests.tiles.tileserver import TileServer

    ckpt, t5 = write_tiny_weights(tmp_path / "weights")
    n = 12
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 32000
    write_gallery(
        tmp_path / "gallery.h5",
        [f"s{i}" for i in range(n)],
        {s: [f"synthetic soundscape {i}" for i in range(n)] for s in (1, 3, 5)},
        {s: rng.normal(size=(n, 32)).astype(np.float32) for s in (1, 3, 5)},
        audio_captions=[f"clip {i}" for i in range(n)],
        raw_audio=[(0.2 * np.sin(2 * np.pi * (100 + 50 * i) * t)).astype(np.float32) for i in range(n)],
        checkpoint="tiny",
    )
    with TileServer() as server:
        monkeypatch.setenv("SAT2SOUND_CHECKPOINT", str(ckpt))
        monkeypatch.setenv("SAT2SOUND_T5_DIR", str(t5))
        monkeypatch.setenv("SAT2SOUND_TILE_URL", server.url_template)
        monkeypatch.setenv("SAT2SOUND_GALLERY", str(tmp_path / "gallery.h5"))
        monkeypatch.setenv("SAT2SOUND_PRECISION", "fp32")
        # the kernel imports the packages from this checkout even if the editable install is stale
        monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[1]))
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
        assert server.request_count > 0  # imagery came from the loopback server
    outputs = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "checkpoint: tiny" in outputs
    assert "1. " in outputs and "synthetic soundscape" in outputs
    assert "3 bands: ('birds singing', 'birds, river', 'concept_id')" in outputs
    assert "['hits.csv', 'soundscape.tif']" in outputs
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
