"""Heatmap math and geometry: whole-query relevance, the demo's word map, grid placement."""

from __future__ import annotations

import numpy as np
import pytest

from sat2sound_core.common.errors import InputError
from sat2sound_core.maps.heatmaps import (
    composed_weights,
    grid_geometry,
    make_heatmap,
    match_word,
    patch_scores,
    query_relevance,
    word_heatmap_values,
)
from tests.fixtures.grid_chips import lonlat_chip, mercator_chip

K = 64


def _scores(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(196, K)).astype(np.float32)


def test_one_code_query_activates_the_patches_with_the_highest_score_for_that_code() -> None:
    s = _scores()
    for code in (0, 17, 63):
        w = np.zeros(K, np.float32)
        w[code] = 1.0
        r = query_relevance(s, w)
        assert int(np.argmax(r)) == int(np.argmax(s[:, code]))
        np.testing.assert_allclose(r, s[:, code], rtol=1e-6)


def test_relevance_equals_patch_query_dot_query_embedding() -> None:
    rng = np.random.default_rng(1)
    codebook = rng.normal(size=(K, 8)).astype(np.float32)
    q_patches = rng.normal(size=(196, 8)).astype(np.float32)
    s = q_patches @ codebook.T  # raw token·codebook products
    w = np.maximum(rng.normal(size=K), 0).astype(np.float32)
    w /= w.sum()
    embedding = w @ codebook
    np.testing.assert_allclose(query_relevance(s, w), q_patches @ embedding, rtol=1e-4, atol=1e-4)


def test_relevance_is_linear_and_rejects_empty_queries() -> None:
    s = _scores(2)
    a = np.zeros(K, np.float32)
    b = np.zeros(K, np.float32)
    a[3], b[9] = 0.25, 0.75
    np.testing.assert_allclose(query_relevance(s, a + b), query_relevance(s, a) + query_relevance(s, b), rtol=1e-5)
    with pytest.raises(InputError, match="no codebook concept"):
        query_relevance(s, np.zeros(K))
    with pytest.raises(InputError, match="codebook weights"):
        query_relevance(s, np.ones(K + 1))


def test_composed_weights_reproduce_the_composed_embedding_direction() -> None:
    rng = np.random.default_rng(3)
    codebook = rng.normal(size=(K, 16))
    wa = np.maximum(rng.normal(size=K), 0)
    wc = np.maximum(rng.normal(size=K), 0)
    a, c = wa @ codebook, wc @ codebook
    w = composed_weights(wa, a, wc, c)
    assert w.sum() == pytest.approx(1.0, abs=1e-5)
    target = a / np.linalg.norm(a) + c / np.linalg.norm(c)
    got = w @ codebook
    cos = got @ target / (np.linalg.norm(got) * np.linalg.norm(target))
    assert cos == pytest.approx(1.0, abs=1e-5)


def test_patch_scores_drop_metadata_tokens() -> None:
    tokens = np.random.default_rng(4).normal(size=(1, 201, K)).astype(np.float32)
    got = patch_scores(tokens)
    assert got.shape == (196, K)
    np.testing.assert_array_equal(got, tokens[0, :196])
    with pytest.raises(InputError):
        patch_scores(np.zeros((100, K)))


def test_word_map_uses_the_word_tokens_strongest_code_and_averages_words() -> None:
    s = _scores(5)
    tokens = ["\u2581birds", "\u2581sing", "\u2581near", "\u2581the", "\u2581river", "</s>"]
    tts = np.zeros((len(tokens), K), np.float32)
    tts[0, 11] = 5.0  # "birds" -> code 11
    tts[4, 40] = 3.0  # "river" -> code 40
    values, matches = word_heatmap_values(s, tts, tokens, ["birds"])
    np.testing.assert_allclose(values, s[:, 11])
    assert matches[0].code == 11 and matches[0].token_index == 0
    values, matches = word_heatmap_values(s, tts, tokens, ["birds", "river"])
    np.testing.assert_allclose(values, (s[:, 11] + s[:, 40]) / 2, rtol=1e-6)
    assert [m.code for m in matches] == [11, 40]


def test_word_matching_rules_and_errors() -> None:
    tokens = ["\u2581a", "\u2581bird", "s", "\u2581chirp", "ing", "</s>"]
    assert match_word("bird", tokens) == 1
    assert match_word("birds", tokens) == 1  # split word: first piece that starts it
    assert match_word("Chirping", tokens) == 3
    with pytest.raises(InputError, match="not among the caption's tokens: .*bird"):
        match_word("traffic", tokens)
    with pytest.raises(InputError, match="empty word"):
        match_word("  ", tokens)
    with pytest.raises(InputError, match="no word"):
        word_heatmap_values(_scores(), np.zeros((6, K)), tokens, [])


@pytest.mark.parametrize("chip", [mercator_chip(), lonlat_chip()], ids=["epsg3857", "epsg4326"])
def test_grid_geometry_places_every_patch_on_the_right_ground(chip) -> None:
    geo = grid_geometry(chip)
    n = chip.image.shape[0]
    cell = n / 14
    h = make_heatmap(np.arange(196, dtype=np.float32), geo, "q", "text")
    for r, c in [(0, 0), (0, 13), (7, 3), (13, 13)]:
        # a ground point in the middle of the chip pixels belonging to patch (r, c)
        x, y = chip.transform @ ((c + 0.5) * cell, (r + 0.5) * cell)
        assert h.value_at(x, y) == r * 14 + c
        cx, cy = h.cell_center(r, c)
        assert cx == pytest.approx(x) and cy == pytest.approx(y)
    x0, y0 = chip.transform @ (0, 0)
    x1, y1 = chip.transform @ (n, n)
    assert h.bounds == pytest.approx((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    west, south, east, north = h.lonlat_bounds
    assert h.overlay_bounds == [[south, west], [north, east]]
    assert west < east and south < north


def test_lonlat_bounds_of_a_mercator_grid() -> None:
    from pyproj import Transformer

    chip = mercator_chip()
    h = make_heatmap(np.zeros((14, 14)), grid_geometry(chip), "q", "text")
    t = Transformer.from_crs(3857, 4326, always_xy=True)
    west, north = t.transform(*(chip.transform @ (0, 0)))
    east, south = t.transform(*(chip.transform @ (300, 300)))
    assert h.lonlat_bounds == pytest.approx((west, south, east, north), abs=1e-9)
