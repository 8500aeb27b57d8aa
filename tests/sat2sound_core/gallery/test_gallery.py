"""Galleries: lazy reading, schema checks, retrieval with answers known by construction."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from sat2sound_core.common.errors import DownloadError, InputError
from sat2sound_core.gallery import Gallery, official_gallery_path, read_gallery_csv, resolve_gallery
from sat2sound_core.retrieval import compose, l2n, rank_embeddings, retrieve, top_k
from tests.fixtures.galleries import synthetic_gallery


@pytest.fixture()
def gallery(tmp_path: Path) -> tuple[Gallery, dict[str, np.ndarray]]:
    truth = synthetic_gallery(tmp_path / "g.h5")
    return Gallery(tmp_path / "g.h5"), truth


def test_schema_info_and_memory_mapping(gallery) -> None:
    g, truth = gallery
    info = g.info()
    assert info.rows == 200 and info.scales == (1, 3, 5) and info.checkpoint == "bingmap_withmeta"
    assert info.has_audio_embedding and info.has_raw_audio and info.synth_audio_scales == (1,)
    mat = g.embeddings("text_embedding_zl3")
    assert isinstance(mat, np.memmap)
    np.testing.assert_array_equal(np.asarray(mat), truth["text3"])
    assert g.caption(17, 5) == "row 17 zl5" and g.audio_caption(3) == "audio of row 3" and g.sample_id(9) == "id-9"
    with pytest.raises(InputError, match="outside"):
        g.caption(200, 1)


@pytest.mark.parametrize("scale", [1, 3, 5])
def test_image_to_caption_top1_is_the_row_it_was_built_from(gallery, scale: int) -> None:
    g, truth = gallery
    rng = np.random.default_rng(scale)
    for row in (0, 57, 199):
        query = truth[f"text{scale}"][row] * 3.0 + rng.normal(scale=0.01, size=1024)
        hits = retrieve(g, query, k=5, scale=scale)
        assert hits[0].row == row and hits[0].rank == 1 and hits[0].caption == f"row {row} zl{scale}"
        assert hits[0].score > 0.95
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
        expected = l2n(truth[f"text{scale}"]) @ l2n(query)
        np.testing.assert_allclose([h.score for h in hits], np.sort(expected)[::-1][:5], rtol=1e-5)


def test_image_to_audio_skips_rows_without_audio(gallery) -> None:
    g, truth = gallery
    query = truth["audio"][40] + truth["audio"][41]  # row 41 has no audio vector (zero)
    hits = retrieve(g, query, k=200, target="audio")
    assert hits[0].row == 40 and hits[0].caption == "audio of row 40"
    assert {h.row for h in hits} == set(np.flatnonzero(truth["has_audio"]).tolist())
    assert all(h.has_audio for h in hits)


def test_composed_query_and_ranking() -> None:
    a = np.array([3.0, 0.0, 0.0])
    c = np.array([0.0, 0.5, 0.0])
    np.testing.assert_allclose(compose(a, c), np.array([1, 1, 0]) / np.sqrt(2), rtol=1e-6)
    cands = np.array([[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    order, scores = rank_embeddings(compose(a, c), cands)
    assert order[0] == 1 and scores[0] == pytest.approx(1.0)
    idx, vals = top_k(np.array([0.1, np.nan, 0.9, -np.inf, 0.9]), 10)
    assert idx.tolist() == [2, 4, 0] and vals.tolist() == pytest.approx([0.9, 0.9, 0.1])


def test_audio_per_row(gallery) -> None:
    g, _ = gallery
    samples, rate = g.audio(10, scale=1)  # row 10: synthesised clip at scale 1
    assert rate == 44100 and samples.shape == (441,) and np.allclose(samples, 0.25)
    samples, rate = g.audio(2, scale=1)  # no synth for row 2: raw recording
    assert rate == 32000 and samples.shape == (3200,)
    assert g.audio(3, scale=1) is None and not g.has_audio(3, 1)
    assert g.has_audio(2, 1) and g.has_audio(10, 3)


def test_schema_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(InputError, match="missing sample_id"):
        Gallery(bad)
    with h5py.File(bad, "w") as f:
        f["sample_id"] = np.array([b"a", b"b"])
        f["text_embedding_zl1"] = np.zeros((3, 8), np.float32)
        f["llava_caption_zl1"] = np.array([b"x", b"y"])
    with pytest.raises(InputError, match="text_embedding_zl1 has shape"):
        Gallery(bad)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="not a readable HDF5"):
        Gallery(tmp_path / "junk.h5")
    with pytest.raises(InputError, match="does not exist"):
        Gallery(tmp_path / "nope.h5")


def test_official_style_bytes_and_chunked_datasets_are_read(tmp_path: Path) -> None:
    """The official file stores byte strings; a chunked/compressed matrix is read (not mapped)."""
    path = tmp_path / "official.h5"
    emb = np.eye(4, 8, dtype=np.float32)
    with h5py.File(path, "w") as f:
        f["sample_id"] = np.array([b"yfcc-1", b"yfcc-2", b"iNat-3", b"aporee-4"])
        f["audio_caption"] = np.array([b"a", b"b", b"c", b"d"])
        for s in (1, 3, 5):
            f[f"llava_caption_zl{s}"] = np.array([f"cap{i} {s}".encode() for i in range(4)])
            f.create_dataset(f"text_embedding_zl{s}", data=emb, compression="gzip", chunks=(2, 8))
        f["synth_audio_zl1"] = np.zeros((4, 2, 100), np.float32) + 0.1
    g = Gallery(path)
    assert g.checkpoint == "bingmap_withmeta"  # no attribute: the official gallery's checkpoint
    assert not isinstance(g.embeddings("text_embedding_zl1"), np.memmap)
    hits = retrieve(g, emb[2], k=1, scale=5)
    assert hits[0].caption == "cap2 5" and hits[0].sample_id == "iNat-3"
    samples, rate = g.audio(1, scale=1)
    assert samples.shape == (2, 100) and rate == 44100


def test_resolve_and_offline_download(tmp_path: Path, product_home: Path, monkeypatch) -> None:
    synthetic_gallery(tmp_path / "mine.h5", n=10)
    monkeypatch.setenv("SAT2SOUND_GALLERY", str(tmp_path / "mine.h5"))
    from sat2sound_core.common.settings import get_settings

    get_settings.cache_clear()
    assert resolve_gallery().rows == 10
    monkeypatch.delenv("SAT2SOUND_GALLERY")
    get_settings.cache_clear()
    with pytest.raises(DownloadError, match="downloads are off"):
        official_gallery_path()
    target = product_home / "weights" / "demo" / "GeoSound_gallery_w_bingmap.h5"
    target.parent.mkdir(parents=True)
    synthetic_gallery(target, n=5)
    assert resolve_gallery("official").rows == 5


def test_csv_errors(tmp_path: Path) -> None:
    p = tmp_path / "g.csv"
    p.write_text("text,audio\nhello,\n")
    with pytest.raises(InputError, match="needs a 'caption' column.*text, audio"):
        read_gallery_csv(p)
    p.write_text("caption,audio\nhello,missing.wav\n")
    with pytest.raises(InputError, match="missing.wav does not exist"):
        read_gallery_csv(p)
    p.write_text("caption\n")
    with pytest.raises(InputError, match="no rows"):
        read_gallery_csv(p)


def test_audio_rows_stored_as_encoded_files(tmp_path: Path) -> None:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    tone = (0.25 * np.sin(np.arange(4410) / 10.0)).astype(np.float32)
    sf.write(buf, np.stack([tone, -tone], axis=1), 44100, format="WAV", subtype="FLOAT")
    path = tmp_path / "enc.h5"
    with h5py.File(path, "w") as f:
        f["sample_id"] = np.array([b"a", b"b"])
        f["llava_caption_zl1"] = np.array([b"x", b"y"])
        f["text_embedding_zl1"] = np.eye(2, 4, dtype=np.float32)
        ds = f.create_dataset("synth_audio_zl1", (2,), dtype=h5py.vlen_dtype(np.uint8))
        ds[0] = np.frombuffer(buf.getvalue(), np.uint8)
        ds[1] = np.frombuffer(b"not audio", np.uint8)
    g = Gallery(path)
    samples, rate = g.audio(0, scale=1)
    assert rate == 44100 and samples.shape == (2, 4410)
    np.testing.assert_allclose(samples[0], tone, atol=1e-6)
    with pytest.raises(InputError, match="cannot be decoded"):
        g.audio(1, scale=1)


def test_build_from_csv_then_reembed_for_another_checkpoint(tmp_path: Path) -> None:
    """A built gallery's stored recordings, re-embedded in batches for another checkpoint name, give
    each row's own embedding; rows without audio stay zero; the cache holds whole .npy files only."""
    import soundfile as sf

    from sat2sound_core.gallery import build_gallery
    from sat2sound_core.gallery.embed import encode_mels, mel
    from tests.fixtures.tiny_model import tiny_model

    model = tiny_model()
    rate = 16000
    lines = ["caption,audio,sample_id"]
    for i in range(5):
        if i != 2:
            tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * np.arange(rate) / rate)
            sf.write(tmp_path / f"c{i}.wav", np.stack([tone, tone], axis=1), rate)
        lines.append(f"place {i},{'' if i == 2 else f'c{i}.wav'},s{i}")
    (tmp_path / "g.csv").write_text("\n".join(lines) + "\n")
    out = build_gallery(tmp_path / "g.csv", tmp_path / "g.h5", model, "tiny", batch_size=2)
    built = Gallery(out)
    assert built.checkpoint == "tiny" and built.rows == 5 and not built.has_audio(2) and built.has_audio(3)
    other = built.for_checkpoint(model, "tiny-again", cache_dir=tmp_path / "cache", batch_size=3)
    assert other.checkpoint == "tiny-again" and other is not built
    got = np.asarray(other.embeddings("audio_embedding"))
    for row in (0, 1, 3, 4):
        clip = built.audio(row)
        assert clip is not None and clip[1] == 32000  # stored resampled to the gallery rate
        want = encode_mels(model, [mel(*clip)])[0]
        np.testing.assert_allclose(got[row], want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    assert not got[2].any()
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert cached == ["audio_embedding.npy", "text_embedding_zl1.npy", "text_embedding_zl3.npy",
                      "text_embedding_zl5.npy"]
    assert built.for_checkpoint(model, "tiny") is built  # already this checkpoint's embeddings
