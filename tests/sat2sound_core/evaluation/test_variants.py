"""Composed variants built as the paper defines them, on planted embeddings whose ranks are known."""

from __future__ import annotations

import numpy as np
import pytest

from sat2sound_core.common.errors import InputError
from sat2sound_core.evaluation.metrics import l2_normalize
from sat2sound_core.evaluation.variants import (
    RunInfo,
    compose,
    evaluate_variant,
    parse_composed,
    record,
    sides,
)

N = 4
EYE = np.eye(N, dtype=np.float32)
IMAGE = EYE * 3.0  # unnormalised on purpose: everything is L2-normalised first
AUDIO = np.roll(EYE, 1, axis=1) * 0.5  # a_i = e_{i+1}
TEXT = np.roll(EYE, 1, axis=1)  # t_i = e_{i+1}


def test_each_variant_builds_its_queries_and_galleries() -> None:
    i, a, t = l2_normalize(IMAGE), l2_normalize(AUDIO), l2_normalize(TEXT)
    at = l2_normalize(a + t)
    s = sides("none", IMAGE, AUDIO, TEXT)
    assert np.allclose(s.i2s_query, i) and np.allclose(s.i2s_gallery, a)
    assert np.allclose(s.s2i_query, a) and np.allclose(s.s2i_gallery, i)
    s = sides("query", IMAGE, AUDIO, TEXT)
    assert np.allclose(s.i2s_query, l2_normalize(i + t)) and np.allclose(s.i2s_gallery, a)
    assert np.allclose(s.s2i_query, at) and np.allclose(s.s2i_gallery, i)
    s = sides("audio", IMAGE, AUDIO, TEXT)
    assert np.allclose(s.i2s_query, i) and np.allclose(s.i2s_gallery, at)
    assert np.allclose(s.s2i_query, at) and np.allclose(s.s2i_gallery, i)
    assert np.allclose(compose(AUDIO, TEXT), at)
    s = sides("none", IMAGE, None, TEXT)  # image-text
    assert np.allclose(s.i2s_gallery, t) and np.allclose(s.s2i_query, t)


def test_planted_ranks() -> None:
    # none: image e_i scores 1 against a_{i-1} = e_i and 0 against its positive and the other two:
    # rank = 1 greater + average of the three tied positions (2, 3, 4) = 3
    r = evaluate_variant("none", IMAGE, AUDIO, TEXT, recall_at=50.0)
    assert r.i2s.median_rank == 3.0 and r.s2i.median_rank == 3.0 and r.i2s.recall == 0.0
    # query: l2n(e_i + e_{i+1}) ties its positive e_{i+1} with e_i at the top: rank 1.5 < k = 2
    r = evaluate_variant("query", IMAGE, AUDIO, TEXT, recall_at=50.0)
    assert r.i2s.median_rank == 1.5 and r.i2s.recall == 1.0
    # the audio query l2n(a+t) = e_{i+1} against images scores 1 only at image i+1: rank 3 as in none
    assert r.s2i.median_rank == 3.0
    a = evaluate_variant("audio", IMAGE, AUDIO, TEXT, recall_at=50.0)
    assert a.s2i == r.s2i  # the paper's note: the audio variant's A2I equals the query variant's


def test_record_schema_and_bad_variants() -> None:
    r = evaluate_variant("none", IMAGE, AUDIO, None)
    rec = record(RunInfo("GeoSound", "bingmap", 1, "none", 0, "x.ckpt", "x"), r)
    assert list(rec) == ["test_mel_index", "test_zoom_level", "dataset_type", "overhead_type", "metadata_type",
                         "expr", "ckpt_path", "addtextto", "I2S_Recall", "I2S_Median_Rank", "S2I_Recall",
                         "S2I_Median_Rank"]
    assert parse_composed("none, query,none", "image-audio") == ("none", "query")
    with pytest.raises(InputError, match="use a comma-separated list of none, query, audio"):
        parse_composed("both", "image-audio")
    with pytest.raises(InputError, match="only to image-audio"):
        parse_composed("query", "image-text")
    with pytest.raises(InputError, match="needs the audio-caption"):
        sides("query", IMAGE, AUDIO, None)
