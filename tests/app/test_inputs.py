"""The pure input rules behind the search box, map clicks and uploads."""

from __future__ import annotations

import pytest

from app import inputs
from sat2sound_core.common.errors import InputError


@pytest.mark.parametrize(
    ("text", "lat", "lon"),
    [
        ("52.52, 13.40", 52.52, 13.40),
        ("  -33.8688;151.2093 ", -33.8688, 151.2093),
        ("(40.7128, -74.0060)", 40.7128, -74.006),
        ("10 20", 10.0, 20.0),
        ("0,359", 0.0, -1.0),  # wrapped into [-180, 180)
        ("+1.5, .25", 1.5, 0.25),
    ],
)
def test_parse_latlon_accepts_common_spellings(text: str, lat: float, lon: float) -> None:
    p = inputs.parse_latlon(text)
    assert p.lat == pytest.approx(lat)
    assert p.lon == pytest.approx(lon)


@pytest.mark.parametrize("text", ["", "berlin", "52.5", "1,2,3", "52.5, east", "nan, 3"])
def test_parse_latlon_rejects_garbage_with_the_expected_format(text: str) -> None:
    with pytest.raises(InputError, match="lat, lon"):
        inputs.parse_latlon(text)


def test_parse_latlon_rejects_out_of_range_and_swapped_order() -> None:
    with pytest.raises(InputError, match="Latitude 95"):
        inputs.parse_latlon("95, 10")
    with pytest.raises(InputError, match="Longitude 500"):
        inputs.parse_latlon("10, 500")


def test_point_label_round_trips_through_the_search_box() -> None:
    p = inputs.make_point(48.858370, 2.294481)
    assert inputs.parse_latlon(p.label()) == p


def test_point_from_click_reads_st_folium_values_and_wraps_longitude() -> None:
    assert inputs.point_from_click(None) is None
    assert inputs.point_from_click({"lat": 1.0}) is None
    assert inputs.point_from_click({"lat": "x", "lng": 2}) is None
    p = inputs.point_from_click({"lat": 51.5, "lng": 359.9})
    assert p is not None and p.lat == 51.5 and p.lon == pytest.approx(-0.1)


def test_audio_upload_limits() -> None:
    inputs.check_audio_upload("clip.WAV", 1000)
    with pytest.raises(InputError, match="wav, flac"):
        inputs.check_audio_upload("notes.txt", 10)
    with pytest.raises(InputError, match="empty"):
        inputs.check_audio_upload("a.wav", 0)
    with pytest.raises(InputError, match="limit is 1 MB"):
        inputs.check_audio_upload("a.flac", 2_000_000, max_bytes=1_000_000)


def test_words() -> None:
    assert inputs.parse_words(" birds, running water ,,") == ["birds", "running water"]
    with pytest.raises(InputError):
        inputs.parse_words(" , ")


def test_metadata_overrides_auto_unknown_and_values() -> None:
    got = inputs.metadata_overrides(month="auto", hour="unknown", audio_source="iNat", caption_source=None)
    assert got == {"hour": "unknown", "audio_source": "iNat"}
    assert inputs.metadata_overrides(month="7", hour="0") == {"month": 7, "hour": 0}
