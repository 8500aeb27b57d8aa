"""Metadata validation and the official encodings (MODEL.md §5)."""

from __future__ import annotations

import math

import pytest
import torch

from sat2sound_core.common.errors import InputError
from sat2sound_core.preprocess.metadata import Metadata, encode_metadata

FULL = "latlong_month_time_asource_tsource"


def test_sources_by_name_code_and_case() -> None:
    m = Metadata(audio_source="inat", caption_source=2)
    assert m.audio_source == "iNat" and m.audio_source_index == 1
    assert m.caption_source == "pengi" and m.caption_source_index == 2
    assert Metadata(audio_source=3).audio_source == "freesound"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lat": 91}, "latitude"),
        ({"lat": -90.5}, "latitude"),
        ({"lon": 180.01}, "longitude"),
        ({"lat": "north"}, "number"),
        ({"lat": float("nan")}, "finite"),
        ({"hour": 24}, "hour"),
        ({"hour": 1.5}, "whole"),
        ({"month": 0}, "month"),
        ({"month": 13}, "month"),
        ({"month": True}, "number"),
        ({"audio_source": "youtube"}, "yfcc, iNat, aporee, freesound"),
        ({"caption_source": "gpt"}, "meta, qwen, pengi"),
        ({"audio_source": 4}, "audio source code"),
    ],
)
def test_invalid_values_raise_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Metadata(**kwargs)  # type: ignore[arg-type]


def test_encodings_follow_the_official_formulas() -> None:
    batch = encode_metadata(Metadata(lat=45.0, lon=-90.0, hour=23, month=3, audio_source="aporee",
                                     caption_source="qwen"), FULL, 1)
    # π·lat/90 and π·lon/180 (the official formulas)
    expect_ll = [math.sin(math.pi / 2), math.cos(math.pi / 2), math.sin(-math.pi / 2), math.cos(-math.pi / 2)]
    assert torch.allclose(batch.latlong[0], torch.tensor(expect_ll), atol=1e-7)
    assert torch.allclose(batch.month[0], torch.tensor([1.0, 0.0]), atol=1e-7)  # 2π·3/12 = π/2
    # hour period 23: h = 23 coincides with h = 0
    assert torch.allclose(batch.time[0], torch.tensor([0.0, 1.0]), atol=1e-6)
    assert batch.audio_source.tolist() == [2] and batch.caption_source.tolist() == [1]
    assert batch.latlong.dtype == torch.float32 and batch.audio_source.dtype == torch.int64
    assert batch.token_mask().tolist() == [[True] * 5]


def test_unknown_values_are_invalid_tokens_with_zero_encodings() -> None:
    items = [Metadata(lat=10, lon=20, hour=5, month=6, audio_source="yfcc", caption_source="meta"),
             Metadata(lat=10, lon=20, month=6, audio_source="yfcc"),
             None]
    batch = encode_metadata(items, FULL, 3)
    assert batch.token_mask().tolist() == [
        [True, True, True, True, True],
        [True, False, True, True, False],
        [False, False, False, False, False],
    ]
    assert batch.time[1].tolist() == [0.0, 0.0] and batch.latlong[2].tolist() == [0.0] * 4


def test_single_metadata_broadcasts_and_lengths_are_checked() -> None:
    batch = encode_metadata({"lat": 1.0, "lon": 2.0}, "latlong_month_time_tsource", 4)
    assert batch.tokens == ("tsource", "latlong", "month", "time")
    assert batch.token_mask().shape == (4, 4)
    assert batch.valid["latlong"].all() and not batch.valid["month"].any()
    with pytest.raises(InputError, match="2 items but the batch has 3"):
        encode_metadata([Metadata(), Metadata()], FULL, 3)
    with pytest.raises(InputError, match="unknown metadata field"):
        encode_metadata({"latitude": 3.0}, FULL, 1)
