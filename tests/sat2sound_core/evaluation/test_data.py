"""Reading the official dataset schema with the real ``datasets`` library: columns, dates, sources, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sat2sound_core.common.errors import InputError
from sat2sound_core.evaluation import data as ed
from tests.sat2sound_core.evaluation import official_dataset as od


def _plan(kind: str = "GeoSound", sat_type: str = "bingmap",
          metadata_type: str = "latlong_month_time_asource_tsource") -> ed.ColumnPlan:
    return ed.ColumnPlan(spec=ed.dataset_spec(kind), sat_type=sat_type, image=True, mel=True, caption=True,
                         metadata_type=metadata_type, checkpoint="tiny")


@pytest.mark.parametrize("fmt", ["disk", "parquet"])
def test_rows_decode_from_a_local_copy(tmp_path: Path, fmt: str) -> None:
    folder = od.write(tmp_path / fmt, fmt=fmt)
    plan = _plan()
    cols = ed.check_columns(ed.available_columns(plan.spec, "test", folder) or [], plan)
    assert "sentinel_image" not in cols and "mel_features" in cols
    source = ed.open_split(plan.spec, "test", cols, folder)
    assert source.num_rows == len(od.ROWS)
    batches = list(ed.iter_batches(source, plan, 3, mel_index=2))
    assert [b.start for b in batches] == [0, 3, 6] and [len(b) for b in batches] == [3, 3, 2]
    rows = [r for b in batches for r in b.rows]
    assert [r.index for r in rows] == list(range(8))
    for i, r in enumerate(rows):
        assert r.mel is not None and np.array_equal(r.mel, od.mel(i)[2, 0])
        assert r.image is not None and r.image == od.jpeg(i)
        assert Image.open(io.BytesIO(r.image)).size == (od.TILE, od.TILE)
        assert r.caption == od.CAPTIONS[i]
        assert r.metadata.audio_source == od.ROWS[i][0] and r.metadata.caption_source == od.ROWS[i][2]
        assert r.metadata.lat == pytest.approx(10 + 7 * i)
    # dates: month/hour as dateutil parses the cleaned text; freesound has no hour; bad dates neither
    got = [(r.metadata.month, r.metadata.hour) for r in rows]
    assert got == [(6, 17), (3, 8), (11, 3), (12, None), (None, None), (7, 22), (None, None), (1, 0)]
    part = list(ed.iter_batches(source, plan, 2, start=3, stop=6))
    assert [r.index for b in part for r in b.rows] == [3, 4, 5]


def test_soundingearth_rows_are_aporee_and_use_date_recorded(tmp_path: Path) -> None:
    folder = od.write(tmp_path / "se", kind="SoundingEarth", n=4)
    plan = _plan("SoundingEarth", "googleEarth", "latlong_month_time_tsource")
    cols = ed.check_columns(ed.available_columns(plan.spec, "test", folder) or [], plan)
    assert "date_recorded" in cols and "googleearth_image" in cols and "source" not in cols
    rows = [r for b in ed.iter_batches(ed.open_split(plan.spec, "test", cols, folder), plan, 4) for r in b.rows]
    assert [r.date.hour for r in rows] == [17, 8, 3, 23]  # aporee rows: the freesound rule does not apply
    assert all(r.metadata.audio_source is None for r in rows)  # SoundingEarth models have no asource token


def test_clean_date_truncates_like_the_official_code() -> None:
    assert ed.clean_date("July 4, 2020 10:30 pm EDT whatever") == "July 4, 2020 10:30 pm"
    assert ed.clean_date("Sat, 21 Nov 2009 03:45:00 GMT+0100 (extra)") == "Sat, 21 Nov 2009 03:45:00 GMT"
    assert ed.clean_date("2012-06-14 17:25:01") == "2012-06-14 17:25:01"
    assert ed.parse_date("2015-12-24 23:10:00", "freesound") == ed.ParsedDate(12, None)
    assert not ed.parse_date(None, "yfcc").month_valid


def test_bad_inputs_name_the_fix(tmp_path: Path) -> None:
    folder = od.write(tmp_path / "nomel", n=2, drop=("mel_features", "date"))
    plan = _plan()
    with pytest.raises(InputError, match=r"mel_features \(the stored audio segments\).*date \(the month/hour"
                                         r".*checkpoint tiny.*task image-audio"):
        ed.check_columns(ed.available_columns(plan.spec, "test", folder) or [], plan)
    with pytest.raises(InputError, match="sentinel imagery but SoundingEarth holds only googleEarth.*GeoSound"):
        _ = _plan("SoundingEarth", "sentinel").image_column
    for bad in (7, -1, True):
        with pytest.raises(InputError, match=r"outside 0\.\.4"):
            ed.check_mel_index(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"offline.*save_to_disk.*12\.7 GB.*--data DIR"):
        ed.open_split(ed.dataset_spec("MVRL/GeoSound"), "test", ["audio_caption"], None, offline=True)
    with pytest.raises(InputError, match="but not validation"):
        ed.open_split(plan.spec, "val", ["audio_caption"], od.write(tmp_path / "t", n=2))
    with pytest.raises(InputError, match="Parquet files of split test"):
        (tmp_path / "empty").mkdir()
        ed.open_split(plan.spec, "test", ["audio_caption"], tmp_path / "empty")
    with pytest.raises(InputError, match="unknown dataset"):
        ed.dataset_spec("ImageNet")
    assert ed.canonical_split("val") == "validation"
