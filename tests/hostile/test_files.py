"""Hostile and broken files: galleries, gallery CSVs, audio, exports and CLI arguments (issue 17).

Every input is generated here with the real libraries (h5py, soundfile, rasterio); each must give one
clear :class:`InputError` (or a clean CLI line), never a traceback, a leaked file or an unbounded allocation.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from sat2sound_core.common.errors import InputError
from sat2sound_core.gallery import Gallery, read_gallery_csv

SECRET = b"root:x:0:0:secret-line-of-a-local-file\n" * 4


def _small_gallery(path: Path, rows: int = 2) -> Path:
    with h5py.File(path, "w") as f:
        f["sample_id"] = np.array([f"id{i}".encode() for i in range(rows)])
        f["text_embedding_zl1"] = np.ones((rows, 8), np.float32)
        f["llava_caption_zl1"] = np.array([f"caption {i}".encode() for i in range(rows)])
    return path


# ---- galleries that point outside themselves (item 5) ----------------------------------------------------


def test_a_caption_dataset_with_external_storage_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    secret.write_bytes(SECRET)
    path = _small_gallery(tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        del f["llava_caption_zl1"]
        f.create_dataset("llava_caption_zl1", (2,), dtype="S16", external=[(str(secret), 0, 32)])
    with h5py.File(path, "r") as f:  # the reproduction: h5py reads the other file's bytes as captions
        assert f["llava_caption_zl1"][0].startswith(b"root:x")
    with pytest.raises(InputError, match="external file"):
        Gallery(path)


def test_an_external_link_is_refused(tmp_path: Path) -> None:
    other = _small_gallery(tmp_path / "other.h5")
    path = _small_gallery(tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        del f["llava_caption_zl1"]
        f["llava_caption_zl1"] = h5py.ExternalLink(str(other), "llava_caption_zl1")
    with pytest.raises(InputError, match="external link"):
        Gallery(path)


def test_a_virtual_dataset_is_refused(tmp_path: Path) -> None:
    other = _small_gallery(tmp_path / "other.h5")
    path = _small_gallery(tmp_path / "g.h5")
    layout = h5py.VirtualLayout(shape=(2, 8), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(other), "text_embedding_zl1", shape=(2, 8))
    with h5py.File(path, "a") as f:
        del f["text_embedding_zl1"]
        f.create_virtual_dataset("text_embedding_zl1", layout)
    with pytest.raises(InputError, match="virtual dataset"):
        Gallery(path)


# ---- galleries of the wrong shape (item 11) --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["scalar", "group"])
def test_sample_id_that_is_a_scalar_or_a_group_is_refused(tmp_path: Path, kind: str) -> None:
    path = _small_gallery(tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        del f["sample_id"]
        if kind == "scalar":
            f["sample_id"] = b"just one"
        else:
            f.create_group("sample_id")
    with pytest.raises(InputError, match=kind):
        Gallery(path)


def test_a_gallery_declaring_1e8_rows_in_a_small_file_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge.h5"
    n = 100_000_000
    with h5py.File(path, "w") as f:
        f.create_dataset("sample_id", (n,), dtype="S4", chunks=(1024,))
        f.create_dataset("text_embedding_zl1", (n, 32), dtype=np.float32, chunks=(1024, 32))
        f.create_dataset("llava_caption_zl1", (n,), dtype="S4", chunks=(1024,))
    assert path.stat().st_size < 64_000
    with pytest.raises(InputError, match="declares"):
        Gallery(path)


def test_raw_audio_of_rank_4_is_refused(tmp_path: Path) -> None:
    path = _small_gallery(tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        f["audio_raw"] = np.ones((2, 2, 3, 4), np.float32) * 0.1
    with Gallery(path) as g, pytest.raises(InputError, match="shape"):
        g.audio(0)


# ---- damaged gallery audio (item 12) ---------------------------------------------------------------------


def test_nan_samples_are_silenced_not_clicks(tmp_path: Path) -> None:
    from sat2sound_core.export import wav_bytes

    path = _small_gallery(tmp_path / "g.h5")
    clip = (0.2 * np.sin(np.arange(8000) / 5.0)).astype(np.float32)
    clip[100:200] = np.nan
    with h5py.File(path, "a") as f:
        f["audio_raw"] = np.stack([clip, clip])
    with Gallery(path) as g:
        got = g.audio(0)
    assert got is not None
    samples, rate = got
    assert np.isfinite(samples).all() and np.all(samples[100:200] == 0)
    pcm, _ = sf.read(__import__("io").BytesIO(wav_bytes(samples, rate)), dtype="int16")
    assert int(np.abs(pcm.astype(np.int32)).max()) <= int(0.2 * 32768) + 1


def test_int16_raw_audio_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = _small_gallery(tmp_path / "g.h5")
    clip = (0.5 * 32767 * np.sin(np.arange(8000) / 5.0)).astype(np.int16)
    with h5py.File(path, "a") as f:
        f["audio_raw"] = np.stack([clip, clip])
    with Gallery(path) as g:
        got = g.audio(1)
    assert got is not None
    samples, _ = got
    assert samples.dtype == np.float32
    assert 0.49 < float(np.abs(samples).max()) <= 0.5
    assert float(np.mean(np.abs(samples) >= 0.999)) == 0.0


def test_wav_export_refuses_nan_rather_than_writing_full_scale_clicks() -> None:
    from sat2sound_core.export import wav_bytes

    bad = np.zeros(1000, np.float32)
    bad[10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        wav_bytes(bad, 16000)


# ---- gallery CSVs (item 11) ------------------------------------------------------------------------------


def test_excel_csv_with_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    csv_path = tmp_path / "g.csv"
    csv_path.write_bytes("caption,sample_id\nbirds at dawn,a\n".encode("utf-8-sig"))
    rows = read_gallery_csv(csv_path)
    assert [r.captions[1] for r in rows] == ["birds at dawn"] and rows[0].sample_id == "a"


def test_a_trailing_comma_is_accepted_and_surplus_values_are_refused(tmp_path: Path) -> None:
    csv_path = tmp_path / "g.csv"
    csv_path.write_text("caption\nbirds at dawn,\nwaves,\n")
    assert [r.captions[1] for r in read_gallery_csv(csv_path)] == ["birds at dawn", "waves"]
    csv_path.write_text("caption\nbirds, at dawn\n")
    with pytest.raises(InputError, match="more fields than the header"):
        read_gallery_csv(csv_path)


def test_a_latin1_csv_is_refused_with_the_fix(tmp_path: Path) -> None:
    csv_path = tmp_path / "g.csv"
    csv_path.write_bytes("caption\ncaf\u00e9 terrace\n".encode("latin-1"))
    with pytest.raises(InputError, match="save it as UTF-8"):
        read_gallery_csv(csv_path)


def test_a_caption_over_128_kb_is_refused(tmp_path: Path) -> None:
    csv_path = tmp_path / "g.csv"
    csv_path.write_text("caption\n" + "a" * 200_000 + "\n")
    with pytest.raises(InputError, match="128 KB"):
        read_gallery_csv(csv_path)


@pytest.mark.parametrize("samples", [np.float32(0.5), np.array([0.5], np.float32), np.full((2, 1), 0.5, np.float32)])
def test_synthesised_audio_of_one_sample_writes_or_fails_cleanly(samples: np.ndarray, tmp_path: Path) -> None:
    from sat2sound_core.synthesis.audio import Audio

    if np.ndim(samples) == 0:
        with pytest.raises(InputError, match="single number"):
            Audio(samples)
        return
    clip = Audio(samples)
    back = Audio.load(clip.save(tmp_path / "one.wav"))
    assert back.samples.shape == clip.samples.shape
    data, _ = sf.read(__import__("io").BytesIO(clip.to_wav_bytes("PCM_16")), always_2d=True)
    assert data.shape == (1, clip.samples.shape[0])


def test_synthesised_nan_audio_is_not_written(tmp_path: Path) -> None:
    from sat2sound_core.synthesis.audio import Audio

    with pytest.raises(InputError, match="NaN"):
        Audio(np.full((2, 100), np.nan, np.float32)).save(tmp_path / "x.wav", subtype="PCM_16")
    assert not list(tmp_path.iterdir())


# ---- audio decoded window by window, in bounded memory (item 6) ----------------------------------------

PEAK_LIMIT_MB = 1024


@pytest.fixture(scope="module")
def six_minutes_8ch_192k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 min, 8 channels, 192 kHz FLAC of silence and tones (~4 MB on disk, 2.2 GB as float32), written in blocks."""
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    rate, channels = 192_000, 8
    tone = (0.25 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    with sf.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as fh:
        for second in range(6 * 60):
            block = np.zeros((rate, channels), np.float32)
            if second % 20 < 3:
                block[:, second % channels] = tone
            fh.write(block)
    return path


def _child_peak_mb(code: str, *args: str) -> tuple[str, float]:
    """Run ``code`` in a fresh Python; its stdout and its own peak RSS in MB.

    The child reports its own ``VmHWM`` (peak RSS of its own memory since exec). Neither the parent's
    ``RUSAGE_CHILDREN`` (the largest child of the whole session) nor the child's ``ru_maxrss`` (which on
    Linux starts at the parent's RSS when it forked, gigabytes late in the suite) measures the child.
    """
    probe = ("\nfor _l in open('/proc/self/status'):\n    if _l.startswith('VmHWM:'):\n"
             "        print('PEAK_KB', _l.split()[1])\n")
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + probe, *args], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr[-3000:]
    out, _, peak_line = run.stdout.rstrip().rpartition("\n")
    assert peak_line.startswith("PEAK_KB "), run.stdout[-500:]
    return out + "\n", int(peak_line.split()[1]) / 1024


def test_a_long_many_channel_recording_is_read_in_bounded_memory(six_minutes_8ch_192k: Path) -> None:
    code = """
        import sys
        from sat2sound_core.preprocess.audio import open_audio, log_mel, log_mel_windows
        audio = open_audio(sys.argv[1])
        one = log_mel(audio, audio.sample_rate, start_seconds=200.0)
        many = log_mel_windows(audio, audio.sample_rate, max_windows=8)
        print(tuple(one.shape), tuple(many.mels.shape), float(one.max()) > -50, many.starts_seconds[-1])
    """
    out, peak = _child_peak_mb(code, str(six_minutes_8ch_192k))
    assert out.split(") ")[0] == "(1001, 64" and "(8, 1001, 64)" in out and "True 350.0" in out, out
    assert peak < PEAK_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_decoding_a_long_recording_whole_is_refused_before_allocating(six_minutes_8ch_192k: Path) -> None:
    from sat2sound_core.preprocess.audio import load_audio

    with pytest.raises(InputError, match="too long to decode whole.*open_audio"):
        load_audio(six_minutes_8ch_192k)


def test_an_uploaded_long_recording_goes_through_the_engine_window_by_window(six_minutes_8ch_192k: Path) -> None:
    """The app's upload path (bridge.decode_audio) and the CLI's (read_audio_file) hand the engine an
    AudioFile, not a decoded array."""
    from app.bridge import decode_audio
    from sat2sound_core.maps.kinds import read_audio_file
    from sat2sound_core.preprocess.audio import AudioFile

    audio, rate = decode_audio(six_minutes_8ch_192k.read_bytes())
    assert isinstance(audio, AudioFile) and rate == 192_000 and audio.channels == 8
    cli_audio, _ = read_audio_file(str(six_minutes_8ch_192k))
    assert isinstance(cli_audio, AudioFile) and cli_audio.duration == pytest.approx(360.0)


# ---- exports respect the umask (item 14; fixed on main by sat2sound_core.common.files) -------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_every_export_kind_gets_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    from sat2sound_core.export import write_audio, write_bytes, write_geotiff, write_hits, write_png
    from sat2sound_core.gallery import write_gallery
    from sat2sound_core.maps.heatmaps import grid_geometry, make_heatmap
    from sat2sound_core.retrieval import Hit
    from sat2sound_core.synthesis.audio import Audio
    from tests.fixtures.grid_chips import mercator_chip

    heat = make_heatmap(np.random.default_rng(0).normal(size=(14, 14)), grid_geometry(mercator_chip()), "birds", "text")
    hits = [Hit(1, 0.9, "wind", 4, True, 1)]
    old = os.umask(umask)
    try:
        wav, side = write_audio(tmp_path / "c.wav", np.full(160, 0.1), 16000, {"caption": "quiet"})
        synth = Audio(np.full((2, 160), 0.1, np.float32)).save(tmp_path / "s.wav")
        written = [
            write_geotiff(tmp_path / "m.tif", [heat]),
            write_png(tmp_path / "m.png", heat, size=16),
            wav, side, synth, synth.with_suffix(".json"),
            write_hits(tmp_path / "h.csv", hits),
            write_hits(tmp_path / "h.json", hits),
            write_bytes(tmp_path / "doc.json", b"{}"),
            write_gallery(tmp_path / "g.h5", ["a"], {1: ["x"]}, {1: np.ones((1, 8), np.float32)}),
        ]
    finally:
        os.umask(old)
    assert len({p.suffix for p in written}) == 6  # .tif .png .wav .json .csv .h5
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_the_engine_encodes_an_audio_file_as_its_decoded_samples(tmp_path: Path, product_home: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sat2sound_core.engine import Engine
    from sat2sound_core.preprocess.audio import load_audio, open_audio
    from sat2sound_core.weights.loading import clear_model_cache
    from tests.fixtures.tiny_model import write_tiny_weights

    ckpt, t5 = write_tiny_weights(tmp_path / "weights")
    monkeypatch.setenv("SAT2SOUND_T5_DIR", str(t5))
    clear_model_cache()
    engine = Engine(checkpoint=str(ckpt), precision="fp32", device="cpu")
    rng = np.random.default_rng(3)
    sf.write(tmp_path / "clip.flac", (0.2 * rng.standard_normal((44100 * 23, 2))).astype(np.float32), 44100)
    decoded, rate = load_audio(tmp_path / "clip.flac")
    lazy = open_audio(tmp_path / "clip.flac")
    for kwargs in ({"start_seconds": 4.5}, {"whole_recording": True}):
        want = engine.encode_audio(decoded, rate, **kwargs).embedding
        got = engine.encode_audio(lazy, rate, **kwargs).embedding
        np.testing.assert_array_equal(got, want)
