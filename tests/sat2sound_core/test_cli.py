"""The ``sat2sound`` CLI end to end: synthetic tiny weights on disk, loopback tiles, real files out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import soundfile as sf

import tiles
from sat2sound_core.cli import main
from tests.fixtures.tiny_model import write_tiny_weights
from tests.tiles.tileserver import TileServer

LAT, LON = 38.63, -90.2


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def server():
    with TileServer() as srv:
        yield srv


@pytest.fixture()
def env(weights, server, product_home, monkeypatch) -> dict[str, str]:
    from sat2sound_core.weights.loading import clear_model_cache

    ckpt, t5 = weights
    monkeypatch.setenv("SAT2SOUND_T5_DIR", str(t5))
    monkeypatch.setenv("SAT2SOUND_TILE_URL", server.url_template)
    monkeypatch.setenv("SAT2SOUND_PRECISION", "fp32")
    monkeypatch.delenv("SAT2SOUND_GALLERY", raising=False)
    tiles.clear_memory_cache()
    clear_model_cache()
    return {"ckpt": str(ckpt)}


def _wav(path: Path, freq: float = 300.0, seconds: float = 2.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), rate)
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_is_complete(capsys) -> None:
    for cmd, expected in [([], ["weights", "heatmap", "retrieve", "concepts", "gallery", "SAT2SOUND_TILE_URL"]),
                          (["heatmap"], ["--lat", "--text", "--word", "--audio", "--compose", "--concepts", "--out",
                                         "--provider", "--checkpoint", "--hour", "--size"]),
                          (["retrieve"], ["-k", "--gallery", "--audio-out", "--target", "--out"]),
                          (["concepts"], ["--top-k", "--examples", "--gallery"]),
                          (["gallery", "build"], ["caption_zl1", "audio", "csv", "out"]),
                          (["gallery", "info"], ["--json"]),
                          (["weights", "download"], ["--gallery", "--all"])]:
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for word in expected:
            assert word in out, (cmd, word)


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("sat2sound")
    proc = subprocess.run([str(exe), "heatmap", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--word" in proc.stdout


@pytest.mark.slow
def test_heatmap_writes_cog_and_pngs_matching_the_engine(env, tmp_path: Path, capsys) -> None:
    wav = _wav(tmp_path / "tone.wav")
    prefix = tmp_path / "out" / "stl"
    prefix.parent.mkdir()
    code, out, err = _run(capsys, "heatmap", "--lat", str(LAT), "--lon", str(LON), "--scale", "3", "-c", env["ckpt"],
                          "--hour", "7", "--month", "unknown", "--text", "birds singing",
                          "--word", "birds near the river:birds,river", "--audio", str(wav),
                          "--compose", f"{wav}:rain", "--concepts", "--out", str(prefix))
    assert code == 0, err
    tif = prefix.with_name("stl.tif")
    assert f"wrote {tif}" in out and "loopback" not in err
    pngs = sorted(p.name for p in prefix.parent.glob("stl_*.png"))
    assert pngs == ["stl_1.png", "stl_2.png", "stl_3.png", "stl_4.png"]
    # the same analysis through the library
    from sat2sound_core.engine import Engine

    engine = Engine(checkpoint=env["ckpt"], precision="fp32", device="cpu")
    result = engine.analyze(LAT, LON, scale=3, metadata={"hour": 7, "month": "unknown"})
    chip = tiles.fetch_chip(LAT, LON, "bingmap", tiles.XYZProvider(
        __import__("os").environ["SAT2SOUND_TILE_URL"], "x", max_zoom=20))
    with rasterio.open(tif) as src:
        assert src.descriptions == ("birds singing", "birds, river", "audio: tone.wav", "audio + rain", "concept_id")
        assert src.crs.to_epsg() == 3857
        assert src.bounds == pytest.approx(chip.crop(3).bounds)
        np.testing.assert_allclose(src.read(1), result.text_heatmap("birds singing").values, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(src.read(2), result.word_heatmap("birds near the river", ["birds", "river"]).values,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(src.read(5), result.concept_map(n_examples=0).labels.astype(np.float32))
        tags = src.tags()
        assert tags["checkpoint"] == "tiny" and tags["scale"] == "3"
        meta = json.loads(tags["metadata"])
        assert meta["hour"] == 7 and meta["month"] is None and meta["lat"] == pytest.approx(LAT)


def test_heatmap_of_a_whole_recording_and_of_a_later_window(env, tmp_path: Path, capsys) -> None:
    """--whole-recording averages every 10-s window; --start picks one window; both match the library."""
    rate = 16000
    t = np.arange(25 * rate) / rate
    wav = tmp_path / "walk.wav"
    sf.write(wav, np.where(t < 12, 0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 2500 * t)), rate)
    prefix = tmp_path / "walk"
    code, out, err = _run(capsys, "heatmap", "--lat", str(LAT), "--lon", str(LON), "-c", env["ckpt"],
                          "--audio", str(wav), "--whole-recording", "--no-png", "--out", str(prefix))
    assert code == 0, err
    code, out, err = _run(capsys, "heatmap", "--lat", str(LAT), "--lon", str(LON), "-c", env["ckpt"],
                          "--audio", str(wav), "--start", "15", "--no-png", "--out", str(tmp_path / "late"))
    assert code == 0, err
    from sat2sound_core import load_audio
    from sat2sound_core.engine import Engine

    samples, sr = load_audio(str(wav))
    result = Engine(checkpoint=env["ckpt"], precision="fp32", device="cpu").analyze(LAT, LON)
    with rasterio.open(tmp_path / "walk.tif") as whole, rasterio.open(tmp_path / "late.tif") as late:
        np.testing.assert_allclose(whole.read(1), result.audio_heatmap(samples, sr, whole_recording=True).values,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(late.read(1), result.audio_heatmap(samples, sr, 15.0).values, rtol=1e-5, atol=1e-6)
        assert not np.allclose(whole.read(1), late.read(1))


def test_gallery_build_info_and_retrieve_with_audio(env, tmp_path: Path, capsys) -> None:
    (tmp_path / "clips").mkdir()
    _wav(tmp_path / "clips" / "a.wav", 200)
    _wav(tmp_path / "clips" / "b.wav", 900)
    (tmp_path / "g.csv").write_text(
        "sample_id,caption,audio,audio_caption\n"
        "s1,birds singing near the river,clips/a.wav,birdsong\n"
        "s2,cars and traffic noise in the city,,traffic\n"
        "s3,waves on the beach,clips/b.wav,surf\n"
        "s4,people talking in a crowd,,crowd\n"
    )
    gallery = tmp_path / "g.h5"
    code, out, err = _run(capsys, "gallery", "build", str(tmp_path / "g.csv"), str(gallery), "-c", env["ckpt"])
    assert code == 0, err
    assert "4 rows" in out
    code, out, err = _run(capsys, "gallery", "info", str(gallery), "--json")
    info = json.loads(out)
    assert info["rows"] == 4 and info["checkpoint"] == "tiny" and info["has_raw_audio"]
    hits_file = tmp_path / "hits.json"
    (tmp_path / "audio").mkdir()
    code, out, err = _run(capsys, "retrieve", "--lat", str(LAT), "--lon", str(LON), "-c", env["ckpt"],
                          "--gallery", str(gallery), "-k", "4", "--out", str(hits_file),
                          "--audio-out", str(tmp_path / "audio"))
    assert code == 0, err
    doc = json.loads(hits_file.read_text())
    assert [h["rank"] for h in doc["hits"]] == [1, 2, 3, 4]
    from sat2sound_core.engine import Engine

    expected = Engine(checkpoint=env["ckpt"], precision="fp32", device="cpu", gallery=gallery).analyze(
        LAT, LON).retrieve(k=4)
    assert [h["caption"] for h in doc["hits"]] == [h.caption for h in expected]
    with_audio = {h["rank"] for h in doc["hits"] if h["has_audio"]}
    assert {h["caption"] for h in doc["hits"] if h["has_audio"]} == {"birds singing near the river", "waves on the beach"}
    wavs = sorted(p.name for p in (tmp_path / "audio").glob("*.wav"))
    assert wavs == sorted(f"hit_{r}.wav" for r in with_audio)
    side = json.loads((tmp_path / "audio" / wavs[0]).with_suffix(".json").read_text())
    assert side["sample_rate"] == 32000 and side["duration_s"] == pytest.approx(2.0, abs=0.01)


def test_concepts_json(env, tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "c.json"
    code, out, err = _run(capsys, "concepts", "--lat", "-33.9", "--lon", "18.4", "-c", env["ckpt"],
                          "--examples", "0", "--out", str(out_file))
    assert code == 0, err
    doc = json.loads(out_file.read_text())
    assert sum(len(g["cells"]) for g in doc["groups"]) == 196
    assert np.array(doc["labels"]).shape == (14, 14)
    assert out.startswith("concept")


@pytest.mark.parametrize("argv, message", [
    (["heatmap", "--lat", "95", "--lon", "0", "--text", "x", "--out", "{tmp}/x"], "latitude"),
    (["heatmap", "--lat", "1", "--lon", "2", "--word", "birds near water:traffic", "--out", "{tmp}/x"],
     "not among the caption's tokens"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--out", "{tmp}/missing/x"], "does not exist"),
    (["heatmap", "--lat", "1", "--lon", "2", "--out", "{tmp}/x"], "at least one query"),
    (["heatmap", "--lat", "1", "--lon", "2", "--audio", "{tmp}/nope.wav", "--out", "{tmp}/x"], "does not exist"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--hour", "25", "--out", "{tmp}/x"], "hour"),
    (["heatmap", "--lat", "1", "--lon", "2", "--audio", "{tmp}/junk.h5", "--out", "{tmp}/x"], "corrupt or not in a supported format"),
    (["retrieve", "--lat", "1", "--lon", "2", "--gallery", "{tmp}/junk.h5"], "not a readable HDF5"),
    (["retrieve", "--lat", "1", "--lon", "2"], "downloads are off"),
    (["gallery", "info", "{tmp}/junk.h5"], "not a readable HDF5"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--provider", "nosuchprovider", "--out", "{tmp}/x"],
     "unknown imagery provider"),
])
def test_errors_are_one_clean_line_with_exit_2(env, tmp_path: Path, capsys, argv, message) -> None:
    (tmp_path / "junk.h5").write_bytes(b"junk")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("heatmap", "retrieve"):
        argv += ["-c", env["ckpt"]]
    code, out, err = _run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert not any(p.suffix == ".tif" for p in tmp_path.iterdir())


def test_weights_list_and_offline_download(product_home, capsys) -> None:
    code, out, _ = _run(capsys, "weights", "list")
    assert code == 0 and "bingmap_withmeta" in out and "sentinel_nometa" in out and "demo gallery" in out
    code, _, err = _run(capsys, "weights", "download", "bingmap_withmeta")
    assert code == 2 and err.startswith("error: ") and "offline" in err


def test_a_registered_heatmap_kind_is_a_heatmap_flag(env, tmp_path: Path, capsys) -> None:
    """One new HeatmapKind object (the test kind of test_kinds.py) gives `sat2sound heatmap --code C`."""
    from tests.sat2sound_core.maps.test_kinds import code_kind

    with code_kind():
        code, out, err = _run(capsys, "heatmap", "--lat", str(LAT), "--lon", str(LON), "-c", env["ckpt"],
                              "--code", "3", "--text", "birds", "--no-png", "--out", str(tmp_path / "k"))
        assert code == 0, err
        from sat2sound_core.engine import Engine

        result = Engine(checkpoint=env["ckpt"], precision="fp32", device="cpu").analyze(LAT, LON)
    with rasterio.open(tmp_path / "k.tif") as src:
        assert src.descriptions == ("birds", "code 3")
        assert src.tags(2)["kind"] == "code"
        np.testing.assert_allclose(src.read(2).reshape(-1), result.patch_scores[:, 3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("argv", "message"), [
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--size", "-5", "--out", "{tmp}/x"], "--size must be between"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--size", "0", "--out", "{tmp}/x"], "--size must be between"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--size", "100000", "--out", "{tmp}/x"], "4096"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--png-size", "0", "--out", "{tmp}/x"], "--png-size"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--start", "nan", "--out", "{tmp}/x"], "--start"),
    (["heatmap", "--lat", "1", "--lon", "2", "--text", "x", "--out", "{tmp}/nodir/"], "does not exist"),
    (["concepts", "--lat", "1", "--lon", "2", "--examples", "-1"], "--examples"),
    (["concepts", "--lat", "1", "--lon", "2", "--top-k", "0"], "--top-k"),
    (["concepts", "--lat", "1", "--lon", "2", "--out", "{tmp}"], "is a folder"),
    (["retrieve", "--lat", "1", "--lon", "2", "--audio-out", "{tmp}/junk.h5"], "is a file; give a folder"),
    (["retrieve", "--lat", "95", "--lon", "2"], "latitude"),
    (["heatmap", "--lat", "1", "--lon", "nan", "--text", "x", "--out", "{tmp}/x"], "--lat/--lon"),
])
def test_bad_arguments_fail_before_the_model_loads(env, tmp_path: Path, capsys, argv, message) -> None:
    """Every check runs first: the checkpoint named here does not exist, so reaching the model would
    give a different error."""
    (tmp_path / "junk.h5").write_bytes(b"junk")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["-c", str(tmp_path / "missing.ckpt")]
    code, out, err = _run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "missing.ckpt" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.h5"]


def test_heatmap_out_folder_writes_inside_it_and_no_runtime_warning_leaks(env, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "maps"
    folder.mkdir()
    code, out, err = _run(capsys, "heatmap", "--lat", str(LAT), "--lon", str(LON), "-c", env["ckpt"],
                          "--text", "birds singing", "--out", f"{folder}/", "--size", "28")
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["heatmap.tif", "heatmap_1.png"]
    assert not (tmp_path / "maps.tif").exists()
    assert "RuntimeWarning" not in err


def test_numpy_runtime_warnings_do_not_reach_stderr(env, tmp_path: Path, capsys, monkeypatch) -> None:
    import warnings

    import numpy as np

    import sat2sound_core.cli as cli

    def noisy(args) -> int:
        with np.errstate(all="warn"):
            _ = np.array([0.0]) / np.array([0.0])
        return 0

    monkeypatch.setitem(cli._COMMANDS, "weights", noisy)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # what a plain `sat2sound` process would print to stderr
        code, _, err = _run(capsys, "weights", "list")
    assert code == 0 and "RuntimeWarning" not in err
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = _run(capsys, "--verbose", "weights", "list")
    assert [w for w in seen if issubclass(w.category, RuntimeWarning)]  # --verbose shows them
