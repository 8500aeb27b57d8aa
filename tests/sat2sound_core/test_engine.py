"""Engine end to end on a real tiny Sat2Sound and real tiles.Chip objects."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch

from sat2sound_core.common.errors import InputError
from sat2sound_core.engine import Engine, default_metadata
from sat2sound_core.gallery import Gallery, write_gallery
from tests.fixtures.chips import make_chip
from tests.fixtures.tiny_model import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture()
def engine(model) -> Engine:
    return Engine(checkpoint="tiny", model=model)


def _tone(seconds: float = 3.0, freq: float = 440.0, rate: int = 32000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


NOW = dt.datetime(2026, 5, 17, 12, 0, tzinfo=dt.UTC)


def test_metadata_defaults_and_overrides() -> None:
    m = default_metadata(38.6, -90.0, NOW)
    assert (m.lat, m.lon, m.month) == (38.6, -90.0, 5)
    assert m.hour == 6  # solar time: 12:00 UTC − 6 h at 90° W
    assert (m.audio_source, m.caption_source) == ("yfcc", "meta")
    m = default_metadata(10.0, 150.0, NOW, {"hour": "unknown", "audio_source": "iNat", "month": 2})
    assert m.hour is None and m.audio_source == "iNat" and m.month == 2 and m.lat == 10.0
    assert default_metadata(0, 170.0, dt.datetime(2026, 12, 31, 16, 0, tzinfo=dt.UTC)).month == 1  # next day there
    with pytest.raises(InputError, match="unknown metadata field"):
        default_metadata(0, 0, NOW, {"weather": "rain"})
    with pytest.raises(InputError, match="month"):
        default_metadata(0, 0, NOW, {"month": 13})


def test_analyze_caches_by_chip_scale_and_metadata(engine: Engine) -> None:
    chip = make_chip()
    r1 = engine.analyze_chip(chip, scale=1, now=NOW)
    assert engine.stats["encodes"] == 1
    assert engine.analyze_chip(make_chip(), scale=1, now=NOW) is r1  # same pixels, new object: cache hit
    assert engine.stats["encodes"] == 1 and engine.stats["cache_hits"] == 1
    engine.analyze_chip(chip, scale=3, now=NOW)
    engine.analyze_chip(chip, scale=1, metadata={"hour": 3}, now=NOW)
    engine.analyze_chip(make_chip(seed=1), scale=1, now=NOW)
    assert engine.stats["encodes"] == 4
    assert r1.metadata.lat == pytest.approx(38.63) and r1.metadata.audio_source == "yfcc"
    assert r1.encoding.token_scores.shape == (1, 196 + 5, 64)
    assert r1.chip.width == 300 and r1.source_chip.width == 1500 and r1.checkpoint == "tiny"


def test_nometa_checkpoint_ignores_metadata() -> None:
    eng = Engine(checkpoint="tiny", model=tiny_model(metadata_type="none"))
    r = eng.analyze_chip(make_chip(), scale=1, metadata={"hour": 3}, now=NOW)
    assert r.metadata is None and r.encoding.token_scores.shape[1] == 196


@pytest.mark.parametrize("scale", [1, 5])
def test_heatmap_geometry_is_the_scale_crop(engine: Engine, scale: int) -> None:
    chip = make_chip()
    r = engine.analyze_chip(chip, scale=scale, now=NOW)
    h = r.text_heatmap("birds singing")
    crop = chip.crop(scale)
    assert h.shape == (14, 14) and h.crs == chip.crs
    assert h.bounds == pytest.approx(crop.bounds)
    assert h.lonlat_bounds == pytest.approx(crop.lonlat_bounds)
    # the ground point at the centre of crop pixels of patch (r, c) falls in heatmap cell (r, c)
    cell = crop.width / 14
    for row, col in [(0, 0), (6, 9), (13, 13)]:
        lon, lat = crop.lonlat_of_pixel((row + 0.5) * cell, (col + 0.5) * cell)
        west, south, east, north = h.lonlat_bounds
        assert west <= lon <= east and south <= lat <= north
        x, y = crop.transform @ ((col + 0.5) * cell, (row + 0.5) * cell)
        assert h.value_at(x, y) == h.values[row, col]
    # patch_grid polygons of tiles and the heatmap cells agree
    poly = crop.patch_grid()[3 * 14 + 4]
    cx, cy = h.cell_center(3, 4)
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(chip.crs, 4326, always_xy=True).transform(cx, cy)
    assert poly.contains(__import__("shapely").geometry.Point(lon, lat))


def test_text_heatmap_is_query_weights_against_patch_scores(engine: Engine, model) -> None:
    r = engine.analyze_chip(make_chip(), scale=1, now=NOW)
    h = r.text_heatmap("traffic noise in the city")
    enc = model.encode_text(["traffic noise in the city"])
    w = enc.codebook_weights[0].numpy()
    expected = r.encoding.token_scores[0, :196].numpy() @ w
    np.testing.assert_allclose(h.values.reshape(-1), expected, rtol=1e-4, atol=1e-3)
    other = r.text_heatmap("birds singing near the river")
    assert not np.allclose(h.values, other.values)
    assert h.kind == "text" and h.query == "traffic noise in the city"
    with pytest.raises(InputError, match="empty"):
        r.text_heatmap("  ")


def test_word_heatmap_follows_the_demo_definition(engine: Engine, model) -> None:
    r = engine.analyze_chip(make_chip(), scale=1, now=NOW)
    caption = "birds singing near the river"
    h = r.word_heatmap(caption, ["birds", "river"])
    enc = model.encode_text([caption], return_token_scores=True)
    tts = enc.token_scores[0]
    tokens = model.text_encoder.tokenizer.convert_ids_to_tokens(model.text_encoder.tokenizer(caption)["input_ids"])
    assert tokens[0] == "\u2581birds" and tokens[4] == "\u2581river"
    c_birds, c_river = int(tts[0].argmax()), int(tts[4].argmax())
    img = r.encoding.token_scores[0, :196]
    expected = (img[:, c_birds] + img[:, c_river]).numpy() / 2
    np.testing.assert_allclose(h.values.reshape(-1), expected, rtol=1e-5, atol=1e-4)
    assert [m["code"] for m in h.details["matches"]] == [c_birds, c_river]
    with pytest.raises(InputError, match="not among the caption's tokens: .*birds"):
        r.word_heatmap(caption, ["traffic"])


def test_audio_and_composed_heatmaps(engine: Engine, model) -> None:
    from sat2sound_core import log_mel
    from sat2sound_core.maps.heatmaps import composed_weights

    r = engine.analyze_chip(make_chip(), scale=1, now=NOW)
    tone = _tone()
    h = r.audio_heatmap(tone, 32000)
    a = model.encode_audio(log_mel(tone, 32000)[None])
    img = r.encoding.token_scores[0, :196].numpy()
    np.testing.assert_allclose(h.values.reshape(-1), img @ a.codebook_weights[0].numpy(), rtol=1e-4, atol=1e-3)
    hc = r.composed_heatmap(tone, 32000, "birds singing")
    c = model.encode_text(["birds singing"])
    w = composed_weights(a.codebook_weights[0], a.embedding[0], c.codebook_weights[0], c.embedding[0])
    np.testing.assert_allclose(hc.values.reshape(-1), img @ w, rtol=1e-4, atol=1e-3)
    assert hc.kind == "composed"
    with pytest.raises(InputError, match="silent"):
        r.audio_heatmap(np.zeros(64000, np.float32), 32000)
    with pytest.raises(InputError, match="too short"):
        r.audio_heatmap(_tone(0.1), 32000)
    with pytest.raises(InputError, match="NaN"):
        r.audio_heatmap(np.full(64000, np.nan, np.float32), 32000)
    with pytest.raises(InputError, match="empty"):
        r.audio_heatmap(np.zeros(0, np.float32), 32000)


def _gallery_with_row(path: Path, target_row: int, vector: np.ndarray, n: int = 50, checkpoint: str = "tiny") -> None:
    rng = np.random.default_rng(0)
    text = {s: rng.normal(size=(n, vector.size)).astype(np.float32) for s in (1, 3, 5)}
    for s in (1, 3, 5):
        text[s][target_row] = vector * 2.0
    write_gallery(path, [f"id{i}" for i in range(n)], {s: [f"cap {i} zl{s}" for i in range(n)] for s in (1, 3, 5)},
                  text, audio_captions=[f"sound {i}" for i in range(n)],
                  raw_audio=[_tone(1.0, 200 + 10 * i) if i % 3 == 0 else None for i in range(n)],
                  checkpoint=checkpoint)


def test_whole_recording_averages_its_windows(engine: Engine, model) -> None:
    """A 25-s recording: windows at 0, 10 and 15 s; the heatmap and the query use their average."""
    from sat2sound_core import log_mel_windows

    rate = 32000
    rng = np.random.default_rng(0)
    wav = np.concatenate([_tone(10.0, 440.0), 0.3 * rng.standard_normal(15 * rate).astype(np.float32)])
    windows = log_mel_windows(wav, rate)
    assert windows.starts_seconds == (0.0, 10.0, 15.0)
    whole = engine.encode_audio(wav, rate, whole_recording=True)
    expected = model.encode_recording(windows.mels)
    assert torch.equal(whole.embedding, expected.embedding)
    first = engine.encode_audio(wav, rate)  # the first 10 s only: the tone
    assert float(torch.nn.functional.cosine_similarity(whole.embedding, first.embedding)) < 0.9999
    r = engine.analyze_chip(make_chip(), scale=1, now=NOW)
    h = r.audio_heatmap(wav, rate, whole_recording=True)
    assert not np.allclose(h.values, r.audio_heatmap(wav, rate).values)
    q = engine.query_embedding(waveform=wav, sample_rate=rate, whole_recording=True)
    e = expected.embedding[0].numpy()
    np.testing.assert_allclose(q, e / np.linalg.norm(e), rtol=1e-5, atol=1e-6)
    # a clip of 10 s or less is one window: the same map either way
    short = _tone(4.0)
    np.testing.assert_allclose(r.audio_heatmap(short, rate, whole_recording=True).values,
                               r.audio_heatmap(short, rate).values, rtol=1e-4, atol=1e-6)


def test_retrieve_finds_the_row_built_from_the_chip_embedding(tmp_path: Path, model) -> None:
    eng = Engine(checkpoint="tiny", model=model, gallery=tmp_path / "g.h5")
    r = eng.analyze_chip(make_chip(), scale=3, now=NOW)
    _gallery_with_row(tmp_path / "g.h5", 17, r.embedding)
    hits = r.retrieve(k=3)
    assert hits[0].row == 17 and hits[0].caption == "cap 17 zl3" and hits[0].scale == 3
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.rank for h in hits] == [1, 2, 3]
    clip = eng.gallery_audio(hits[0])
    assert clip is None  # row 17 has no audio (only every third row has)
    hit0 = type(hits[0])(1, 0.0, "", 0, True, 3)
    samples, rate = eng.gallery_audio(hit0)
    assert rate == 32000 and samples.shape == (32000,)


def test_gallery_embeddings_are_recomputed_for_another_checkpoint(tmp_path: Path, model, product_home) -> None:
    _gallery_with_row(tmp_path / "g.h5", 0, np.ones(32, np.float32), n=12, checkpoint="bingmap_withmeta")
    eng = Engine(checkpoint="tiny", model=model, gallery=tmp_path / "g.h5")
    g = eng.get_gallery()
    assert g.checkpoint == "tiny"
    from sat2sound_core.gallery import encode_texts

    src = Gallery(tmp_path / "g.h5")
    expected = encode_texts(model, src.strings("llava_caption_zl5"))
    np.testing.assert_allclose(np.asarray(g.embeddings("text_embedding_zl5")), expected, rtol=1e-5, atol=1e-6)
    cached = sorted(p.name for p in (product_home / "galleries").rglob("*.npy"))
    assert cached == ["text_embedding_zl1.npy", "text_embedding_zl3.npy", "text_embedding_zl5.npy"]
    # a caption's own embedding finds its row with the recomputed embeddings
    q = model.encode_text(["cap 7 zl5"]).embedding[0]
    from sat2sound_core.retrieval import retrieve

    assert retrieve(g, q, k=1, scale=5)[0].row == 7
    # a second engine reuses the cache instead of encoding again
    calls = []
    real = model.encode_text

    def counting(texts, **kw):
        calls.append(texts)
        return real(texts, **kw)

    model.encode_text = counting
    try:
        Engine(checkpoint="tiny", model=model, gallery=tmp_path / "g.h5").get_gallery()
    finally:
        del model.encode_text
    assert calls == []


def test_concept_map_groups_and_examples(tmp_path: Path, engine: Engine, model) -> None:
    r = engine.analyze_chip(make_chip(), scale=1, now=NOW)
    scores = r.encoding.token_scores[0, :196].numpy()
    codebook = model.fdt.space_dict.numpy()
    # gallery whose row 4 embedding is exactly the codebook row of the chip's most common top concept
    top1 = scores.argmax(axis=1)
    code = int(np.bincount(top1).argmax())
    n = 20
    rng = np.random.default_rng(1)
    text = {s: rng.normal(size=(n, 32)).astype(np.float32) for s in (1, 3, 5)}
    text[1][4] = codebook[code]
    write_gallery(tmp_path / "c.h5", [str(i) for i in range(n)], {s: [f"c{i}" for i in range(n)] for s in (1, 3, 5)},
                  text, checkpoint="tiny")
    cm = r.concept_map(top_k=3, gallery=tmp_path / "c.h5")
    np.testing.assert_array_equal(cm.labels.reshape(-1), top1)
    assert cm.codes.shape == (14, 14, 3)
    assert np.all(np.diff(cm.scores, axis=-1) <= 0)
    assert sum(len(g.cells) for g in cm.groups) == 196
    assert cm.groups[0].code == code and cm.groups[0].examples[0] == "c4"
    assert all(len(a.cells) >= len(b.cells) for a, b in zip(cm.groups, cm.groups[1:], strict=False))
    # a concept that leads no group gets its examples on request, the same way
    group_codes = {g.code for g in cm.groups}
    other = next(int(c) for c in cm.codes[..., 1:].reshape(-1) if int(c) not in group_codes)
    g = Gallery(tmp_path / "c.h5")
    proj = np.asarray(g.embeddings("text_embedding_zl1")) @ codebook[other] / g.norms("text_embedding_zl1")
    assert cm.examples(other) == tuple(f"c{i}" for i in np.argsort(-proj, kind="stable")[:3])
    hm = cm.heatmap(code)
    np.testing.assert_allclose(hm.values.reshape(-1), scores[:, code])


def test_sentinel_chip_is_epsg4326(model) -> None:
    eng = Engine(checkpoint="tiny", model=tiny_model(sat_type="sentinel"))
    chip = make_chip(lat=-33.9, lon=18.4, geometry="sentinel")
    r = eng.analyze_chip(chip, scale=1, now=NOW)
    h = r.text_heatmap("waves on the beach")
    assert h.crs.to_epsg() == 4326 and h.bounds == pytest.approx(chip.crop(1).bounds)
    rgba = h.to_rgba(size=64)
    assert rgba.shape == (64, 64, 4)


def test_export_real_result(tmp_path: Path, engine: Engine) -> None:
    import rasterio

    from sat2sound_core.export import write_geotiff

    r = engine.analyze_chip(make_chip(), scale=1, now=NOW)
    maps = [r.text_heatmap("birds"), r.word_heatmap("the river", "river")]
    out = write_geotiff(tmp_path / "r.tif", maps, r.chip, concept_map=r.concept_map(n_examples=0),
                        checkpoint=r.checkpoint, scale=r.scale, metadata=r.metadata)
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 3857 and src.descriptions == ("birds", "river", "concept_id")
        assert src.bounds == pytest.approx(r.chip.bounds)
        assert '"audio_source": "yfcc"' in src.tags()["metadata"]
    assert torch.is_tensor(r.encoding.embedding)


def test_audio_and_text_queries_search_the_gallery_and_rank_places(tmp_path: Path, model) -> None:
    from sat2sound_core.retrieval import compose, l2n

    eng = Engine(checkpoint="tiny", model=model, gallery=tmp_path / "g.h5")
    tone = _tone(2.0, 300.0)
    q_audio = eng.query_embedding(waveform=tone, sample_rate=32000)
    _gallery_with_row(tmp_path / "g.h5", 9, q_audio)
    hits = eng.search(waveform=tone, sample_rate=32000, k=2, scale=5)
    assert hits[0].row == 9 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    a = eng.encode_audio(tone, 32000).embedding[0]
    c = eng.encode_text("rain").embedding[0]
    np.testing.assert_allclose(eng.query_embedding("rain", tone, 32000), compose(a, c).reshape(-1), rtol=1e-5)
    places = [eng.analyze_chip(make_chip(seed=s), scale=1, now=NOW) for s in range(3)]
    ranked = eng.rank_places(places, waveform=tone, sample_rate=32000)
    expected = [float(l2n(p.embedding) @ l2n(a)) for p in places]
    assert [s for _, s in ranked] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    assert ranked[0][0] is places[int(np.argmax(expected))]
    with pytest.raises(InputError, match="text, an audio clip, or both"):
        eng.query_embedding()
    with pytest.raises(InputError, match="no analysed places"):
        eng.rank_places([], text="rain")


def test_gallery_open_reads_no_embeddings(tmp_path: Path) -> None:
    n = 10_000
    rng = np.random.default_rng(0)
    write_gallery(tmp_path / "big.h5", [str(i) for i in range(n)],
                  {s: [f"row {i} zl{s}" for i in range(n)] for s in (1, 3, 5)},
                  {s: rng.normal(size=(n, 16)).astype(np.float32) for s in (1, 3, 5)})
    g = Gallery(tmp_path / "big.h5")
    assert g.rows == 10_000 and g.info().rows == 10_000
    assert g._matrices == {} and g._norms == {}
    assert g.caption(9_999, 3) == "row 9999 zl3"


def test_analyze_fetches_through_tiles_and_caches(model, product_home, monkeypatch) -> None:
    import tiles
    from tests.tiles.tileserver import TileServer

    tiles.clear_memory_cache()
    with TileServer() as server:
        provider = tiles.XYZProvider(server.url_template, "loopback test tiles", max_zoom=20, name="loopback")
        eng = Engine(checkpoint="tiny", model=model, provider=provider)
        r1 = eng.analyze(45.0, 7.0, scale=1, now=NOW)
        requests = server.request_count
        assert requests > 0 and r1.chip.attribution == "loopback test tiles"
        r2 = eng.analyze(45.0, 7.0, scale=1, now=NOW)
        assert r2 is r1 and eng.stats["encodes"] == 1
        assert server.request_count == requests  # the tiles came from the tile cache
        direct = tiles.fetch_chip(45.0, 7.0, "bingmap", provider)
        np.testing.assert_array_equal(r1.source_chip.image, direct.image)
        assert r1.chip.bounds == pytest.approx(direct.crop(1).bounds)
    tiles.clear_memory_cache()


def test_analyze_returns_a_chip_analysis_and_imagery_errors_are_product_errors(model, product_home,
                                                                               monkeypatch) -> None:
    from sat2sound_core.common.errors import ConfigError, ImageryError, Sat2SoundError
    from sat2sound_core.engine import ChipAnalysis
    from tiles.errors import TilesError

    assert isinstance(Engine(checkpoint="tiny", model=model).analyze_chip(make_chip(), now=NOW), ChipAnalysis)
    eng = Engine(checkpoint="tiny", model=model, provider="nosuchprovider")
    with pytest.raises(ImageryError, match="unknown imagery provider 'nosuchprovider'") as caught:
        eng.analyze(45.0, 7.0, now=NOW)
    assert isinstance(caught.value, Sat2SoundError) and isinstance(caught.value.__cause__, TilesError)
    with pytest.raises(ImageryError, match="latitude"):
        Engine(checkpoint="tiny", model=model).analyze(91.0, 7.0, now=NOW)
    # SAT2SOUND_TILE_URL and its attribution / max zoom: parsed by tiles.config, validated
    monkeypatch.setenv("SAT2SOUND_TILE_URL", "http://127.0.0.1:1/{z}/{x}/{y}.png")
    monkeypatch.setenv("SAT2SOUND_TILE_MAX_ZOOM", "high")
    with pytest.raises(ConfigError, match="SAT2SOUND_TILE_MAX_ZOOM='high'"):
        Engine(checkpoint="tiny", model=model).resolve_provider()
    monkeypatch.setenv("SAT2SOUND_TILE_MAX_ZOOM", "17")
    monkeypatch.setenv("SAT2SOUND_TILE_ATTRIBUTION", "my tiles")
    provider = Engine(checkpoint="tiny", model=model).resolve_provider()
    assert (provider.name, provider.max_zoom, provider.attribution) == ("custom", 17, "my tiles")
    assert eng.resolve_provider() == "nosuchprovider"  # an explicit provider wins over the template
