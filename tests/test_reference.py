"""The reference material the fidelity suites read is where the fixtures say it is."""

from pathlib import Path

from tests.conftest import reference_file


def test_reference_files_present(sat2sound_reference: Path, tangoflux_reference: Path) -> None:
    for name in ("MODEL.md", "make_weights.py", "golden_shared.pt", "golden_bingmap_withmeta.pt",
                 "manifest_bingmap_withmeta.json"):
        assert reference_file(sat2sound_reference, name).stat().st_size > 0
    assert reference_file(tangoflux_reference, "golden_tiny.pt").stat().st_size > 0
